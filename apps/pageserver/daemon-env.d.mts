export function pageserverEnv(env?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;

// The package's public entry (`import { startNode } from 'postern'`): what an application needs
// to run a node in-process: the settings (loadConfig, from POSTERN_* variables or a plain
// object), a logger, startNode() and the handle it returns. docs/embedding.md shows the use;
// everything else under dist/ is internal and may change between versions.
export { startNode, type PosternNode } from './main.js';
export { loadConfig, ConfigError, type Env } from './config/load.js';
export type { Config } from './config/schema.js';
export { createLogger, silentLogger, type Logger } from './log/logger.js';
export { PosternError, type ErrorCode } from './errors.js';

// `illava serve`: starts the server of src/server.ts on a loaded model and runs until SIGINT/SIGTERM.
import type { LlavaModel } from './llava.js';
import { startServer } from './server.js';

export interface ServeFlags {
  host: string;
  port: number;
  apiKey?: string;
  modelId?: string;
  maxQueue: number;
  maxTokens: number;
  bodyLimit: number;
  maxImageBytes: number;
  maxImages: number;
  allowLocalImages?: boolean;
  quiet?: boolean;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export async function serveCommand(model: LlavaModel, flags: ServeFlags): Promise<void> {
  const server = await startServer(model, {
    host: flags.host,
    port: flags.port,
    apiKey: flags.apiKey || undefined,
    modelId: flags.modelId,
    maxQueue: flags.maxQueue,
    defaultMaxTokens: flags.maxTokens,
    bodyLimit: flags.bodyLimit,
    maxImageBytes: flags.maxImageBytes,
    maxImages: flags.maxImages,
    allowLocalImages: flags.allowLocalImages,
    log: flags.quiet ? false : (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
  if (!LOOPBACK.test(flags.host) && !flags.apiKey) process.stderr.write(`illava: warning: listening on ${flags.host} without --api-key: anyone who can reach it can use the model\n`);
  process.stderr.write(`illava serve: model '${server.modelId}' at ${server.url}/v1 (POST /v1/chat/completions, GET /v1/models, GET /health)${flags.apiKey ? '; API key required' : ''}\n`);
  await new Promise<void>((done) => {
    const stop = () => {
      process.stderr.write('illava serve: stopping\n');
      void server.close().finally(() => {
        model.dispose();
        done();
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

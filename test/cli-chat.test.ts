// The CLI's chat, serve, --version, --json and --quiet, run as a user would (child processes on the
// built CLI, the interactive chat driven through its stdin).
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';

const CLI = join(REPO_ROOT, 'dist/src/cli.js');
const SAMPLE = join(REPO_ROOT, 'models/default/sample.png');

function illava(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120000, input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('illava CLI: chat, serve, --version, --json, --quiet', function () {
  this.timeout(120000);

  it('chat: a multi-turn conversation through stdin, /image attaches, errors are one line and the chat goes on', () => {
    const input = ['/image ' + SAMPLE, 'What colour is the star?', 'Is there a yellow star?', '/image /nonexistent.png', '/bogus', '', '/reset', 'Where is the yellow star?', '/exit', 'never read'].join('\n');
    const r = illava(['chat', '--backend', 'wasm', '--max-new-tokens', '4'], input);
    expect(r.code, r.stderr).to.equal(0);
    // After /reset the last question has no image: the shapes model still answers one word.
    const answers = r.stdout.split('\n').filter(Boolean);
    expect(answers.slice(0, 2)).to.deep.equal(['yellow', 'yes']);
    expect(answers).to.have.length(3);
    expect(r.stderr).to.match(/\(image .*sample\.png attached to your next message\)/);
    expect(r.stderr).to.match(/\(75 prompt tokens, image tokens 64 -> 64, 1 generated, \d+ ms\)/);
    expect(r.stderr).to.match(/illava: image 1: image '\/nonexistent\.png': file not found/);
    expect(r.stderr).to.match(/illava: unknown command '\/bogus'/);
    expect(r.stderr).to.match(/\(conversation cleared\)/);
    const quiet = illava(['chat', '--quiet', '--image', SAMPLE, '--max-new-tokens', '4'], 'What colour is the star?\n');
    expect(quiet.code, quiet.stderr).to.equal(0);
    expect(quiet.stdout).to.equal('yellow\n');
    expect(quiet.stderr).to.equal('');
  });

  it('--version, generate --json --quiet and info --json', () => {
    const version = illava(['--version']);
    expect(version.code).to.equal(0);
    expect(version.stdout.trim()).to.equal((JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    const g = illava(['generate', '--json', '--quiet', '--max-new-tokens', '4', '--merge', 'illava']);
    expect(g.code, g.stderr).to.equal(0);
    expect(g.stderr).to.equal('');
    const out = JSON.parse(g.stdout) as { text: string; tokenIds: number[]; promptIds: number[]; finishReason: string; merges: Array<{ patches: number; tokens: number }>; timings: { totalMs: number } };
    expect(out.text).to.match(/^[a-z-]+$/); // one word of the shapes vocabulary (with merging it need not be the right one)
    expect(out.tokenIds).to.have.length(1);
    expect(out.finishReason).to.equal('stop');
    expect(out.merges[0]).to.include({ patches: 64, tokens: 21 });
    expect(out.timings.totalMs).to.be.greaterThan(0);
    const info = illava(['info', '--json', '--model', TINY_LLAVA_DIR]);
    expect(info.code, info.stderr).to.equal(0);
    const i = JSON.parse(info.stdout) as { vision: { layers: number }; decoder: { layers: number; contextLength: number }; parameters: number; storedDtypes: string[] };
    expect(i.vision.layers).to.equal(3);
    expect(i.decoder).to.include({ layers: 2, contextLength: 4096 });
    expect(i.parameters).to.be.greaterThan(0);
    expect(i.storedDtypes).to.deep.equal(['F32']);
  });

  it('serve: listens on loopback, answers, and stops on SIGTERM; bad flags are one line', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /at (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(`serve exited: ${stderr}`)));
    });
    try {
      const body = { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${readFileSync(SAMPLE).toString('base64')}` } }, { type: 'text', text: 'What colour is the star?' }] }] };
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content).to.equal('yellow');
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, stderr).to.equal(0);
    const bad = illava(['serve', '--port', 'abc']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr.trim().split('\n')).to.deep.equal(["illava: --port expects an integer in [0, 65535], got 'abc'"]);
  });
});

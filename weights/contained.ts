// Weight files must lie inside the model folder: a shard path from an index or manifest, or a
// symbolic link in the folder, must not make the loader read a file elsewhere (a model folder
// from the internet could otherwise read /etc/passwd or another user's files into its errors or
// its weights). Paths with `..` or absolute ones are refused where they are parsed; this checks
// where a file really is, after every symbolic link. The one exception is the Hugging Face hub
// cache, whose snapshot folders link each file to the repository's blobs folder:
//   <repo>/snapshots/<revision>/model.safetensors -> ../../blobs/<sha256>
import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';

function within(root: string, path: string): boolean {
  const r = relative(root, path);
  return r !== '' && !r.startsWith('..') && !isAbsolute(r);
}

/**
 * Throws unless `path`, symbolic links resolved, lies inside the folder `dir` (or, for a Hugging
 * Face hub snapshot folder, inside its repository's blobs folder). A path that does not exist is
 * left to the caller to report. `label` starts the message.
 */
export function checkInsideFolder(dir: string, path: string, label: string): void {
  let real: string;
  let root: string;
  try {
    root = realpathSync(dir);
    real = realpathSync(path);
  } catch {
    return;
  }
  if (within(root, real)) return;
  if (basename(dirname(root)) === 'snapshots' && within(join(dirname(dirname(root)), 'blobs'), real)) return;
  throw new Error(`${label}: is a symbolic link to '${real}', outside the model folder '${dir}' (refused: weight files must lie inside the model folder)`);
}

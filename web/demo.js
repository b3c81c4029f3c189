// The demo page: load a model (the embedded default, any HF folder URL, or dropped files), pick
// or drop an image, ask, and see the streamed answer, token counts, stage times and the merge
// picture. ?backend=wasm|webgl|webgpu|cpu picks the backend, ?model=URL the folder, ?weights=q8_0 the format.
import * as il from './illava.browser.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let model;
let image = $('image');

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

async function load() {
  document.body.dataset.state = 'loading';
  $('ask').disabled = true;
  model?.dispose();
  model = undefined;
  const files = $('model-files').files;
  const from = files.length ? files : $('model-url').value;
  const t0 = performance.now();
  try {
    model = await il.loadLlava(from, {
      backend: $('backend').value,
      weightFormat: $('format').value,
      onDownload: (p) => { $('progress').value = p.total ? p.loaded / p.total : 0; status(`downloading ${p.file}: ${(p.loaded / 1e6).toFixed(1)} MB`); },
      onProgress: (p) => { $('progress').value = p.loaded / p.total; status(`building tensors ${p.loaded}/${p.total}`); },
    });
  } catch (e) {
    status(`load failed: ${e.message}`, true);
    document.body.dataset.state = 'error';
    return;
  }
  $('progress').value = 1;
  status(`${model.dir}: loaded in ${(performance.now() - t0).toFixed(0)} ms on ${il.activeBackend()}, ${model.layout.formats.decoder} weights`);
  document.body.dataset.state = 'ready';
  $('ask').disabled = false;
}

function setImage(blob) {
  const img = new Image();
  img.id = 'image';
  img.src = URL.createObjectURL(blob);
  image.replaceWith(img);
  image = img;
}

async function ask() {
  $('ask').disabled = true;
  document.body.dataset.state = 'answering';
  $('answer').textContent = '';
  $('answer').className = '';
  try {
    const rgb = await il.browserImageToRgb(image);
    const merge = { ...il.resolveModelMerge($('merge').value, model.config), trackSources: true };
    const out = await model.generate({
      prompt: $('question').value, images: [rgb], merge, maxNewTokens: 32,
      onToken: (text) => { $('answer').textContent += text; },
    });
    $('answer').textContent = out.text;
    const m = out.merges[0];
    const vision = m.vision.map((c) => `${c.tokens} after vision layer ${c.layer}`);
    const language = m.language.map((c) => `${c.tokens} after LLM layer ${c.layer}`);
    $('counts').textContent = [`image: ${m.patches} patches -> ${m.tokens} tokens`, ...vision, ...language,
      `sequence: ${out.sequenceLength.input} -> ${out.sequenceLength.afterMerge} after merging; ${out.tokenIds.length} generated (${out.finishReason})`].join('\n');
    const t = out.timings;
    $('times').textContent = [`preprocess ${t.preprocessMs.toFixed(1)} ms`, `vision + projector ${t.visionMs.toFixed(1)} ms`, `prefill ${t.prefillMs.toFixed(1)} ms`,
      `first token ${t.firstTokenMs.toFixed(1)} ms`, `decode ${t.decodeMs.toFixed(1)} ms (${t.decodeTokensPerSecond.toFixed(1)} tokens/s)`, `total ${t.totalMs.toFixed(1)} ms`].join('\n');
    drawPictures(rgb, m);
    document.body.dataset.state = 'answered';
  } catch (e) {
    $('answer').textContent = e.message;
    $('answer').className = 'error';
    document.body.dataset.state = 'error';
  }
  $('ask').disabled = false;
}

function drawPictures(rgb, report) {
  const resized = model.imageProcessor.preprocess(rgb, model.maxImagePixels).resized;
  const box = $('pictures');
  box.replaceChildren();
  for (const p of il.mergePictures(resized, model.config.vision.patchSize, report, Math.max(1, Math.ceil(224 / resized.width)))) {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = p.side;
    canvas.getContext('2d').putImageData(new ImageData(p.rgba, p.side, p.side), 0, 0);
    const fig = document.createElement('figure');
    const cap = document.createElement('figcaption');
    cap.textContent = p.title;
    fig.append(canvas, cap);
    box.append(fig);
  }
}

for (const name of il.MERGE_PRESET_NAMES) $('merge').append(new Option(name, name, name === 'illava', name === 'illava'));
if (params.get('backend')) $('backend').value = params.get('backend');
if (params.get('model')) $('model-url').value = params.get('model');
if (params.get('weights')) $('format').value = params.get('weights');
$('load').onclick = load;
$('ask').onclick = ask;
$('image-file').onchange = () => { if ($('image-file').files[0]) setImage($('image-file').files[0]); };
const drop = $('drop');
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = [...e.dataTransfer.files].find((f) => f.type.startsWith('image/'));
  if (file) setImage(file);
};
await load();

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
for (const be of ['wasm','cpu']) {
await tf.setBackend(be);
for (const [N,C,drop] of [[577,1024,72],[700,4096,101]]) {
const x = tf.randomNormal([N,C]);
const dropped = new Set(); let s=7; while(dropped.size<drop){ s=(s*1103515245+12345)%2147483648; dropped.add(1+ s%(N-1)); }
const keep=[...Array(N).keys()].filter(i=>!dropped.has(i));
const idx = tf.tensor1d(keep,'int32');
const runs=[]; for(const i of keep){ const l=runs[runs.length-1]; if(l && l[0]+l[1]===i) l[1]++; else runs.push([i,1]); }
function time(name, f){ for(let k=0;k<4;k++){const t=performance.now(); tf.tidy(()=>{const y=f(); y.dataSync();}); if(k==3) console.log(be,N,C,name,(performance.now()-t).toFixed(2));}}
time('gather', ()=>tf.gather(x, idx));
time(`slices(${runs.length})`, ()=>tf.concat(runs.map(([a,l])=>tf.slice(x,[a,0],[l,-1])),0));
}}

// Hugging Face LLaVA tensor names -> canonical names.
//
// Canonical = the old llava-hf scheme (transformers < 4.52):
//   language_model.model.*          (LLaMA decoder)
//   language_model.lm_head.weight   (output head)
//   vision_tower.vision_model.*     (CLIP vision tower)
//   multi_modal_projector.*         (projector)
//   image_newline                   (anyres models)
// The new scheme (transformers >= 4.52) moved the submodules under `model.`:
//   model.language_model.X        -> language_model.model.X
//   model.vision_tower.X          -> vision_tower.X
//   model.multi_modal_projector.X -> multi_modal_projector.X
//   lm_head.weight                -> language_model.lm_head.weight
//   model.image_newline           -> image_newline
// Names matching neither scheme are kept as they are (extras the model may ignore).

const NEW_TO_OLD_PREFIXES: ReadonlyArray<readonly [string, string]> = [
  ['model.language_model.', 'language_model.model.'],
  ['model.vision_tower.', 'vision_tower.'],
  ['model.multi_modal_projector.', 'multi_modal_projector.'],
  ['lm_head.', 'language_model.lm_head.'],
  ['model.image_newline', 'image_newline'],
];

/** Canonical (old-scheme) name of a tensor name in either scheme. */
export function toCanonicalName(name: string): string {
  for (const [from, to] of NEW_TO_OLD_PREFIXES) {
    if (name.startsWith(from)) return to + name.slice(from.length);
  }
  return name;
}

/** New-scheme (transformers >= 4.52) name of a canonical name, for messages. */
export function toNewSchemeName(canonical: string): string {
  for (const [newPrefix, oldPrefix] of NEW_TO_OLD_PREFIXES) {
    if (canonical.startsWith(oldPrefix)) return newPrefix + canonical.slice(oldPrefix.length);
  }
  return canonical;
}

/**
 * Map canonical name -> name as stored, for every stored name. Throws when two stored names map
 * to the same canonical name (e.g. a file holding both `lm_head.weight` and
 * `language_model.lm_head.weight`): which one the model would get is then ambiguous.
 */
export function canonicalNameMap(storedNames: Iterable<string>, origin: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const stored of storedNames) {
    const canonical = toCanonicalName(stored);
    const previous = map.get(canonical);
    if (previous !== undefined) {
      throw new Error(`${origin}: tensors '${previous}' and '${stored}' both map to the canonical name '${canonical}' (old and new Hugging Face naming mixed?)`);
    }
    map.set(canonical, stored);
  }
  return map;
}

/** Canonical prefixes of the three parts of a LLaVA checkpoint (old llava-hf scheme). */
export const CANONICAL_PREFIX = {
  vision: 'vision_tower.vision_model.',
  projector: 'multi_modal_projector.',
  language: 'language_model.model.',
} as const;

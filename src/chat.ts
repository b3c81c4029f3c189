// LLaVA-1.5 chat template (llava-hf `chat_template`, single user turn):
//   0 images:  "USER: {text} ASSISTANT:"
//   n images:  "USER: " + "<image>\n" * n + "{text} ASSISTANT:"
// If the text already contains `<image>` markers they are kept where they are (their number must
// equal the image count). Video: pass the frames as images; each frame gets its own `<image>`
// placeholder, in order, exactly as n still images would (LLaVA-1.5 has no frame markers).
// `raw: true` uses the text as the complete prompt (no template), still checking the markers.

export const IMAGE_PLACEHOLDER = '<image>';

export interface PromptOptions {
  /** The text is the whole prompt: no template is applied. */
  raw?: boolean;
  /** Prepended as "{system} USER: ..." (e.g. LLaVA's original conv_llava_v1 system prompt). */
  system?: string;
  /** Placeholder text (default "<image>"). */
  imageToken?: string;
}

/** Number of non-overlapping occurrences of `marker` in `text`. */
export function countImageMarkers(text: string, marker = IMAGE_PLACEHOLDER): number {
  return text.split(marker).length - 1;
}

export function buildLlavaPrompt(userText: string, imageCount: number, opts: PromptOptions = {}): string {
  if (!Number.isInteger(imageCount) || imageCount < 0) {
    throw new Error(`buildLlavaPrompt: imageCount must be a non-negative integer (got ${imageCount})`);
  }
  const marker = opts.imageToken ?? IMAGE_PLACEHOLDER;
  const present = countImageMarkers(userText, marker);
  if ((present > 0 || opts.raw) && present !== imageCount) {
    throw new Error(
      `prompt has ${present} '${marker}' marker(s) but ${imageCount} image(s) were given; ` +
        `use one marker per image, or none and let the template add them`,
    );
  }
  if (opts.raw) return userText;
  const images = present > 0 ? '' : `${marker}\n`.repeat(imageCount);
  const system = opts.system ? `${opts.system} ` : '';
  return `${system}USER: ${images}${userText} ASSISTANT:`;
}

// Where each patch of an anyres image's tiles lies on the original photo, so that a merge report's
// patch -> token maps (MergeReport.patchToToken / tiles / stages, over all tiles' patches: tile t's
// patch p is patch t * side^2 + p) can be drawn on the photo across tiles.
//
// Geometry (HF LlavaOnevisionImageProcessor): the base tile (t = 0) is the whole photo resized
// straight to tile x tile (aspect not kept); the grid tiles (t >= 1, row-major) cut the canvas on
// which the photo was resized to newW x newH (aspect kept) and centred at (padX, padY). A tile's
// patches cover side * patch px of it (SigLIP 384 / 14: 27 patches, the last 6 px in none).
import type { LlavaConfig } from './config.js';
import { canvasPlacement, tileSide, type CanvasPlacement } from './anyres.js';

/** A rectangle on the original photo, in pixels (x1, y1 exclusive), clipped to the photo. */
export interface PhotoBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export class TileGeometry {
  /** Patches along one tile side. */
  readonly side: number;
  readonly placement: CanvasPlacement;
  readonly rows: number;
  readonly cols: number;

  constructor(readonly config: LlavaConfig, readonly height: number, readonly width: number) {
    if (!config.anyres) throw new Error(`model_type '${config.modelType}' has no anyres tiles`);
    this.side = tileSide(config);
    this.placement = canvasPlacement(config.anyres, height, width);
    this.rows = this.placement.bestH / config.vision.imageSize;
    this.cols = this.placement.bestW / config.vision.imageSize;
  }

  /** Tiles: the base, then rows x cols. */
  get tiles(): number {
    return 1 + this.rows * this.cols;
  }

  /** Patches of all tiles (the length of a tiled image's patchToToken). */
  get patches(): number {
    return this.tiles * this.side * this.side;
  }

  /** The photo box of patch p (raster order) of tile t, or null when it lies wholly in the canvas padding. */
  patchBox(tile: number, patch: number): PhotoBox | null {
    const s = this.side;
    if (!Number.isInteger(tile) || tile < 0 || tile >= this.tiles || !Number.isInteger(patch) || patch < 0 || patch >= s * s) {
      throw new Error(`patchBox: no patch ${patch} of tile ${tile} (${this.tiles} tiles of ${s * s} patches)`);
    }
    const ps = this.config.vision.patchSize;
    const tilePx = this.config.vision.imageSize;
    const r = Math.floor(patch / s);
    const c = patch % s;
    let box: PhotoBox;
    if (tile === 0) {
      const fx = this.width / tilePx;
      const fy = this.height / tilePx;
      box = { x0: c * ps * fx, y0: r * ps * fy, x1: (c + 1) * ps * fx, y1: (r + 1) * ps * fy };
    } else {
      const { newW, newH, padX, padY } = this.placement;
      const tr = Math.floor((tile - 1) / this.cols);
      const tc = (tile - 1) % this.cols;
      const cx = tc * tilePx + c * ps;
      const cy = tr * tilePx + r * ps;
      const fx = this.width / newW;
      const fy = this.height / newH;
      box = { x0: (cx - padX) * fx, y0: (cy - padY) * fy, x1: (cx + ps - padX) * fx, y1: (cy + ps - padY) * fy };
    }
    const clipped = { x0: Math.max(0, box.x0), y0: Math.max(0, box.y0), x1: Math.min(this.width, box.x1), y1: Math.min(this.height, box.y1) };
    return clipped.x1 > clipped.x0 && clipped.y1 > clipped.y0 ? clipped : null;
  }

  /**
   * The patch of the grid tiles (t >= 1) covering photo pixel (x, y), as an index over all tiles'
   * patches, or -1 (a tile's remainder strip). The inverse of patchBox for drawing.
   */
  gridPatchAt(x: number, y: number): number {
    const { newW, newH, padX, padY } = this.placement;
    const tilePx = this.config.vision.imageSize;
    const ps = this.config.vision.patchSize;
    const cx = Math.floor(((x + 0.5) * newW) / this.width) + padX;
    const cy = Math.floor(((y + 0.5) * newH) / this.height) + padY;
    const tc = Math.floor(cx / tilePx);
    const tr = Math.floor(cy / tilePx);
    const c = Math.floor((cx - tc * tilePx) / ps);
    const r = Math.floor((cy - tr * tilePx) / ps);
    if (c >= this.side || r >= this.side || tc >= this.cols || tr >= this.rows) return -1;
    return (1 + tr * this.cols + tc) * this.side * this.side + r * this.side + c;
  }

  /** The base tile's patch covering photo pixel (x, y), or -1 (the remainder strip). */
  basePatchAt(x: number, y: number): number {
    const tilePx = this.config.vision.imageSize;
    const ps = this.config.vision.patchSize;
    const c = Math.floor(Math.floor(((x + 0.5) * tilePx) / this.width) / ps);
    const r = Math.floor(Math.floor(((y + 0.5) * tilePx) / this.height) / ps);
    return c >= this.side || r >= this.side ? -1 : r * this.side + c;
  }
}

// A small line/point chart on a Jimp image, for the scripts' PNG figures (the eval's accuracy plot,
// the training curves). Hand-written because the figures need only axes, points, interval bars and
// dashed lines, and a charting library would pull a canvas/DOM stack into a Node-only script.
import { Jimp, loadFont } from 'jimp';
import { SANS_16_BLACK } from 'jimp/fonts';

type Font = Awaited<ReturnType<typeof loadFont>>;
type Image = InstanceType<typeof Jimp>;

export interface ChartAxes {
  /** x range and the tick values to label. */
  x: { min: number; max: number; ticks: number[]; label: string };
  /** y as a fraction (labelled in %), from yMin to 1, a tick every 0.1. */
  yMin: number;
  title: string;
}

const WIDTH = 820;
const HEIGHT = 480;

export class Chart {
  readonly width = WIDTH;
  readonly height = HEIGHT;
  private readonly left = 70;
  private readonly right = this.width - 200;
  private readonly top = 40;
  private readonly bottom = this.height - 60;
  private legendY = this.top;

  private constructor(private readonly img: Image, private readonly font: Font, private readonly axes: ChartAxes) {}

  static async create(axes: ChartAxes): Promise<Chart> {
    const chart = new Chart(new Jimp({ width: WIDTH, height: HEIGHT, color: 0xffffffff }), await loadFont(SANS_16_BLACK), axes);
    chart.drawAxes();
    return chart;
  }

  X(v: number): number {
    const { min, max } = this.axes.x;
    return this.left + ((v - min) / (max - min)) * (this.right - this.left);
  }

  Y(a: number): number {
    return this.bottom - ((a - this.axes.yMin) / (1 - this.axes.yMin)) * (this.bottom - this.top);
  }

  /** A filled square of half-size r at pixel (x, y). */
  dot(x: number, y: number, colour: number, r = 1): void {
    for (let dx = -r; dx <= r; dx++) for (let dy = -r; dy <= r; dy++) {
      const px = Math.round(x + dx);
      const py = Math.round(y + dy);
      if (px >= 0 && py >= 0 && px < this.width && py < this.height) this.img.setPixelColor(colour, px, py);
    }
  }

  /** A pixel line; dash > 0 leaves every other run of `dash` pixels out. */
  line(x0: number, y0: number, x1: number, y1: number, colour: number, r = 1, dash = 0): void {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let i = 0; i <= n; i++) {
      if (dash > 0 && Math.floor(i / dash) % 2 === 1) continue;
      this.dot(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n, colour, r);
    }
  }

  /** A horizontal line across the plot at accuracy a. */
  level(a: number, colour: number, dash: number): void {
    this.line(this.left, this.Y(a), this.right, this.Y(a), colour, 0, dash);
  }

  /** A legend entry: a dot (or a dashed segment) and its name, stacked down the right margin. */
  legend(name: string, colour: number, dashed = false): void {
    const x = this.right + 30;
    const y = this.legendY + 9;
    if (dashed) this.line(x - 10, y, x + 10, y, colour, 0, 2);
    else this.dot(x, y, colour, 3);
    this.img.print({ font: this.font, x: this.right + 45, y: this.legendY, text: name });
    this.legendY += 24;
  }

  async write(path: string): Promise<void> {
    await this.img.write(path as `${string}.png`);
  }

  private drawAxes(): void {
    const black = 0x000000ff;
    const { x, yMin, title } = this.axes;
    this.line(this.left, this.bottom, this.right, this.bottom, black, 0);
    this.line(this.left, this.top, this.left, this.bottom, black, 0);
    for (const t of x.ticks) {
      this.line(this.X(t), this.bottom, this.X(t), this.bottom + 5, black, 0);
      const text = String(t);
      this.img.print({ font: this.font, x: this.X(t) - 4 * text.length, y: this.bottom + 8, text });
    }
    for (let a = yMin; a <= 1 + 1e-9; a += 0.1) {
      this.line(this.left - 5, this.Y(a), this.left, this.Y(a), black, 0);
      this.line(this.left + 1, this.Y(a), this.right, this.Y(a), 0xddddddff, 0, 3);
      this.img.print({ font: this.font, x: 20, y: this.Y(a) - 9, text: `${Math.round(a * 100)}%` });
    }
    this.img.print({ font: this.font, x: this.left + 120, y: this.height - 28, text: x.label });
    this.img.print({ font: this.font, x: this.left, y: 10, text: title });
  }
}

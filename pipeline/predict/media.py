"""What ``predict`` reads and writes besides the model: the inputs a SOURCE names, images, video, drawings.

SOURCE is an image file, a video file, a folder (its files; with ``recursive`` its subfolders' too) or a
glob pattern (``"photos/*.jpg"``, ``"clips/**/*.mp4"``; quote it so the shell does not expand it).
Images are read with Pillow, turned upright by their EXIF orientation (phone photos are stored sideways
with a rotation tag) and converted to RGB. Video is read and written with PyAV (``av``), whose wheels
carry FFmpeg's libraries, decoders and the H.264 encoder: nothing else to install, no ``ffmpeg``
binary on the PATH, and each decoded frame comes with its own timestamp, which the smoothing filter's
gap rule needs (variable frame rate phone clips). Annotated video is H.264 in MP4 at the source's frame
rate.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.data.visualize import AXES_LENGTH_FRACTION, draw_axes
from pipeline.faces.crop import crop_square
from pipeline.runs import UserError, atomic_path

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp")
VIDEO_CODEC = "libx264"  # H.264, the codec every player reads; in PyAV's wheels
# x264's "veryfast" preset: its default ("medium") took 50 ms a frame at 512 x 600 on a 2-core EPYC, more
# than detection, crop and model together; veryfast took 16 ms, at a somewhat larger file.
VIDEO_OPTIONS = {"preset": "veryfast", "crf": "23"}
BOX_COLOUR = (255, 210, 0)


def image_suffixes() -> set[str]:
    from PIL import Image

    return {s.lower() for s in Image.registered_extensions()}


def kind_of(path: Path) -> str:
    """"video", "image" or "unsupported", by suffix."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return "image" if suffix in image_suffixes() else "unsupported"


def list_inputs(source: str | Path, recursive: bool = False) -> list[Path]:
    """The files SOURCE names, sorted; hidden files (``.DS_Store``) left out. A SOURCE that names
    nothing is a :class:`UserError`."""
    text = str(source)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = path.rglob("*") if recursive else path.iterdir()
        found = sorted(p for p in files if p.is_file() and not any(part.startswith(".")
                                                                    for part in p.relative_to(path).parts))
        if not found:
            raise UserError(f"{path}: the folder holds no files{'' if recursive else ' (use --recursive for subfolders)'}")
        return found
    if glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not found:
            raise UserError(f"{text}: the pattern matches no file")
        return found
    raise UserError(f"{text}: no such file or folder; give an image, a video, a folder or a quoted glob pattern")


def read_image(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB, upright by its EXIF orientation; raises on a file Pillow cannot decode."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"), np.uint8).copy()


@dataclass(frozen=True)
class VideoFrame:
    index: int
    time_s: float
    rgb: np.ndarray


class VideoReader:
    """Frames of a video's first video stream, decoded in order: ``for frame in reader``."""

    def __init__(self, path: Path):
        import av

        self.container = av.open(str(path))
        if not self.container.streams.video:
            self.container.close()
            raise ValueError("the file holds no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.rate = Fraction(rate) if rate else Fraction(30)
        self.frames = int(self.stream.frames or 0)  # 0 when the container does not say

    def __iter__(self) -> Iterator[VideoFrame]:
        for i, frame in enumerate(self.container.decode(self.stream)):
            t = float(frame.time) if frame.time is not None else i / float(self.rate)
            yield VideoFrame(i, t, frame.to_ndarray(format="rgb24"))

    def close(self) -> None:
        self.container.close()


class VideoWriter:
    """H.264 / MP4 frames into an open PyAV output container (see :func:`video_writer`)."""

    def __init__(self, container, rate: Fraction):
        self.container = container
        self.stream = self.container.add_stream(VIDEO_CODEC, rate=rate)
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = dict(VIDEO_OPTIONS)
        self.size: tuple[int, int] | None = None

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self.size is None:  # 4:2:0 chroma needs even sides: an odd one gets its edge row or column twice
            h, w = rgb.shape[:2]
            self.size = (w + w % 2, h + h % 2)
            self.stream.width, self.stream.height = self.size
        w, h = self.size
        if rgb.shape[:2] != (h, w):
            rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.size is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()


@contextlib.contextmanager
def video_writer(dest: Path, rate: Fraction) -> Iterator[VideoWriter]:
    """A :class:`VideoWriter` whose file appears at ``dest`` complete, when the block ends without error."""
    import av

    with atomic_path(dest) as tmp:
        writer = VideoWriter(av.open(str(tmp), "w", format="mp4"), rate)
        try:
            yield writer
        finally:
            writer.close()


def count_frames(path: Path) -> int:
    """Frames a video decodes to (for tests and checks; decodes the whole file)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def annotate(rgb: np.ndarray, faces: list[tuple[tuple[float, float, float, float], np.ndarray]],
             scale: float, shift_y: float) -> np.ndarray:
    """A copy of the frame with each face's box and pose axes drawn. Axes start at the centre of the
    model's crop square, ``AXES_LENGTH_FRACTION`` of its side long, as the app and the goldens draw them."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(rgb, np.uint8))
    draw = ImageDraw.Draw(im)
    width = max(2, round(min(rgb.shape[:2]) / 200))
    for box, pose in faces:
        draw.rectangle([box[0], box[1], box[2], box[3]], outline=BOX_COLOUR, width=max(1, width // 2))
        left, top, side = crop_square(box, scale, shift_y)
        draw_axes(draw, pose, (left + side / 2.0, top + side / 2.0), AXES_LENGTH_FRACTION * side, width)
    return np.asarray(im)

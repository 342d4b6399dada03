"""Rollout videos: labelled frames, laid out side by side or one after another, written as GIF
or MP4 files and as TensorBoard summaries.

A frame is an ``[H, W, 3]`` uint8 array (what ``env.render()`` returns with
``render_mode="rgb_array"``); a clip is a sequence of frames.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Frame = np.ndarray
Clip = Sequence[Frame]

FORMATS = (".mp4", ".gif")


def label(frame: Frame, lines: Sequence[str]) -> Frame:
    """``frame`` with ``lines`` of text in its top-left corner, white on a dark band so they
    read on any background."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    size = max(10, out.shape[0] // 24)
    top = 0
    for line in lines:
        text = _text(line, size)[: out.shape[0] - top, : out.shape[1]]
        out[top : top + text.shape[0], : text.shape[1]] = text
        top += text.shape[0]
        if top >= out.shape[0]:
            break
    return out


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _text(line: str, size: int) -> np.ndarray:
    # Glyph rendering is most of a label's cost, and most lines repeat from frame to frame.
    font = _font(size)
    pad = 3
    width = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(line, font=font))
    image = Image.new("RGB", (width + 2 * pad, size + pad + 1), (30, 30, 30))
    ImageDraw.Draw(image).text((pad, 1), line, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def side_by_side(clips: Sequence[Clip]) -> list[Frame]:
    """One clip of the ``clips`` next to each other; shorter clips hold their last frame."""
    length = max(len(c) for c in clips)
    return [np.concatenate([c[min(t, len(c) - 1)] for c in clips], axis=1)
            for t in range(length)]


def one_after_another(clips: Sequence[Clip]) -> list[Frame]:
    return [frame for clip in clips for frame in clip]


def gif_bytes(frames: Clip, fps: float) -> bytes:
    """An animated GIF of ``frames`` at ``fps``, looping."""
    # Fast octree quantisation, no dithering: 2-3x faster than Pillow's default median cut,
    # and rollouts have few colours.
    images = [Image.fromarray(np.ascontiguousarray(f)).quantize(
        256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, round(1000 / fps)), loop=0)
    return buffer.getvalue()


def write_video(path: str | Path, frames: Clip, fps: float) -> Path:
    """``frames`` as ``path``: MP4 (H.264, with imageio's own ffmpeg) or GIF, by its suffix."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: a video file must end in {' or '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
        return path
    import imageio.v2 as imageio

    # H.264 wants even sizes; the pad keeps every frame's pixels.
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1,
                            ffmpeg_log_level="error") as writer:
        for frame in frames:
            h, w = frame.shape[:2]
            writer.append_data(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
    return path


def read_video(path: str | Path) -> np.ndarray:
    """The frames of a GIF or MP4 file: ``[T, H, W, 3]`` uint8."""
    import imageio.v3 as iio

    frames = iio.imread(Path(path), index=None)
    return np.asarray(frames)[..., :3]


def tensorboard_video(frames: Clip, fps: float, tag: str):
    """A TensorBoard summary holding ``frames`` as an animated GIF: what torch's
    ``SummaryWriter.add_video`` writes, without its moviepy 1.x dependency (moviepy 2 removed
    the module it imports). TensorBoard shows it in the Images tab."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    h, w = frames[0].shape[:2]
    image = Summary.Image(height=h, width=w, colorspace=3,
                          encoded_image_string=gif_bytes(frames, fps))
    return Summary(value=[Summary.Value(tag=tag, image=image)])


class Window:
    """A desktop window that shows frames (pygame; needs a display)."""

    def __init__(self, title: str, width: int, height: int) -> None:
        import os

        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self._pygame = pygame
        pygame.display.init()
        pygame.display.set_caption(title)
        self._screen = pygame.display.set_mode((width, height))

    def show(self, frame: Frame) -> None:
        pygame = self._pygame
        pygame.event.pump()  # keeps the window responsive
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        if surface.get_size() != self._screen.get_size():
            surface = pygame.transform.smoothscale(surface, self._screen.get_size())
        self._screen.blit(surface, (0, 0))
        pygame.display.flip()

    def close(self) -> None:
        self._pygame.display.quit()

"""Microphone input as a stream of audio blocks (needs the optional sounddevice package: ser[live])."""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIC_BLOCK = 0.1  # seconds per microphone buffer: short enough that a window is reported promptly


class MicrophoneUnavailable(RuntimeError):
    """sounddevice or the PortAudio library is missing; the message says how to install them."""


def microphone_blocks(
    device: str | int | None = None, duration: float | None = None, sample_rate: int | None = None
) -> tuple[Iterator[np.ndarray], int]:
    """Mono float32 microphone buffers and their sample rate (the device's default unless given)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the package is there but PortAudio is not
        raise MicrophoneUnavailable(
            f"mic=true needs the optional sounddevice package and the PortAudio library ({exc}); "
            "install them with: pip install 'ser[live]'"
        ) from exc
    if sample_rate is None:
        sample_rate = int(sd.query_devices(device, "input")["default_samplerate"])
    rate = int(sample_rate)
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def callback(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            log.warning("microphone: %s", status)
        blocks.put(indata.copy())

    def generate() -> Iterator[np.ndarray]:
        limit = None if duration is None else round(duration * rate)
        seen = 0
        with sd.InputStream(
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=round(MIC_BLOCK * rate),
            device=device,
            callback=callback,
        ):
            try:
                while limit is None or seen < limit:
                    block = blocks.get()
                    if limit is not None:
                        block = block[: limit - seen]
                    seen += len(block)
                    yield block
            except KeyboardInterrupt:
                # Ctrl-C ends the stream like the end of a file: the windows still open are reported.
                log.info("stopped; finishing the last window")

    return generate(), rate

"""Spectral features of synthetic recordings over a parameter grid (the user's module).

``spectral_features.py`` copies this module next to a cache folder, runs it, edits
its taper and shows what turns stale. Nothing here knows about the command line.
"""

from __future__ import annotations

import os

import numpy as np

from metricache import ParameterizedDatedCacheManager

CM = ParameterizedDatedCacheManager(os.environ.get("FEATURES_CACHE", "cache"), verbose=False)

RATE = 1000.0  # samples per second
TONES = [5.0, 40.0, 120.0]
NOISE = [0.1, 1.0]
GRID = [(tone, noise) for tone in TONES for noise in NOISE]


def taper(n: int) -> np.ndarray:
    """The window applied to each frame before its FFT."""
    return np.hanning(n)


@CM.collect(params_list=GRID)
def recording(tone: float, noise: float) -> np.ndarray:
    """Ten seconds of a sine at *tone* Hz in white noise of standard deviation *noise*."""
    t = np.arange(int(10 * RATE)) / RATE
    rng = np.random.default_rng(int(tone * 10 + noise * 100))
    return np.sin(2 * np.pi * tone * t) + noise * rng.normal(size=t.size)


@CM.collect(params_list=GRID)
def psd(tone: float, noise: float) -> np.ndarray:
    """Welch's power spectral density: mean periodogram of tapered 1-second frames."""
    frames = CM.recording(tone, noise).reshape(-1, int(RATE))
    window = taper(frames.shape[1])
    spectra = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return spectra.mean(axis=0) / (window**2).sum()


@CM.collect(params_list=GRID)
def features(tone: float, noise: float) -> dict[str, float]:
    """Peak frequency, spectral centroid and peak-to-median ratio (dB) of one PSD."""
    power = CM.psd(tone, noise)
    freqs = np.fft.rfftfreq(int(RATE), 1 / RATE)
    return {
        "peak_hz": float(freqs[power.argmax()]),
        "centroid_hz": float((freqs * power).sum() / power.sum()),
        "snr_db": float(10 * np.log10(power.max() / np.median(power))),
    }


@CM.collect
def table() -> list[dict[str, float]]:
    """Every grid point's features, one row each."""
    return [{"tone": t, "noise": n, **CM.features(t, n)} for t, n in GRID]

"""Preprocessing fitted once and saved with the model: log1p of skewed features, then
standardisation with means and deviations reduced over all blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Preprocessor:
    """``z = (f(x) - mean) / std`` per feature, ``f = log1p`` for skewed ones.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": [0.0, 9.0], "b": [1.0, 3.0]})
    >>> p = Preprocessor.fit_moments(["a", "b"], {"a"}, [Preprocessor.moments(df, ["a", "b"], {"a"})])
    >>> p.transform(df).round(3).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    """

    features: list[str]
    log: list[str]
    mean: list[float]
    std: list[float]

    @staticmethod
    def _raw(df: pd.DataFrame, features: list[str], log) -> np.ndarray:
        cols = []
        for f in features:
            v = df[f].to_numpy(dtype=np.float64)
            cols.append(np.log1p(np.maximum(v, 0)) if f in log else v)
        return np.column_stack(cols) if cols else np.zeros((len(df), 0))

    @classmethod
    def moments(cls, df: pd.DataFrame, features: list[str], log) -> tuple:
        """Per-block sums (sum, sum of squares, count) for :meth:`fit_moments`."""
        x = cls._raw(df, features, log)
        x = np.where(np.isfinite(x), x, 0.0)
        return x.sum(0), (x * x).sum(0), x.shape[0]

    @classmethod
    def fit_moments(cls, features: list[str], log, parts: list[tuple]) -> Preprocessor:
        s1 = np.sum([p[0] for p in parts], axis=0)
        s2 = np.sum([p[1] for p in parts], axis=0)
        n = max(sum(p[2] for p in parts), 1)
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
        std = np.where(std > 1e-12, std, 1.0)
        return cls(list(features), sorted(set(log) & set(features)), mean.tolist(), std.tolist())

    def transform(self, df: pd.DataFrame, xp=np):
        """Scaled float32 matrix; with ``xp`` = cupy the arithmetic runs on the GPU and
        the result stays there (one host-to-device copy of the raw columns)."""
        raw = (
            np.column_stack([df[f].to_numpy(dtype=np.float64) for f in self.features])
            if self.features
            else np.zeros((len(df), 0))
        )
        x = xp.asarray(raw)
        if self.log:
            idx = [i for i, f in enumerate(self.features) if f in set(self.log)]
            x[:, idx] = xp.log1p(xp.maximum(x[:, idx], 0))
        x = xp.where(xp.isfinite(x), x, 0.0)
        mean, std = xp.asarray(self.mean), xp.asarray(self.std)
        return ((x - mean) / std).astype(xp.float32)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        x = np.asarray(z, dtype=np.float64) * np.asarray(self.std) + np.asarray(self.mean)
        for i, f in enumerate(self.features):
            if f in self.log:
                x[:, i] = np.expm1(x[:, i])
        return x

    def to_dict(self) -> dict:
        return {"features": self.features, "log": self.log, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        return cls(list(d["features"]), list(d["log"]), list(d["mean"]), list(d["std"]))

"""A random walk with restart on a style graph that always spells valid Octuple notes.

The walk visits the 8 fields of a note in order. The next token is drawn among the graph's tokens
of that field that the grammar allows (bars advance by at most one, positions do not go back
within a bar and stay inside it, one metre for the whole piece), with probability

    p(c) ∝ (w(prev, c) + w(same field of previous note, c) + eps) * exp(cos(z_prev, z_c) / temperature)

where ``w`` are the style graph's edge weights and ``z`` the GCN node embeddings. With probability
``restart`` per note the context jumps back to a seed note (from ``--prompt`` or the style).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from musictl import constants as C
from musictl.errors import MusictlError
from musictl.midi.vocab import TokenizerConfig


@dataclass
class WalkSettings:
    bars: int = 16
    temperature: float = 0.5
    restart: float = 0.1
    max_notes_per_bar: int = 48
    seed: int = 0


class RandomWalker:
    def __init__(self, nodes: np.ndarray, adjacency: sp.csr_matrix, embeddings: np.ndarray, config: TokenizerConfig,
                 notes_per_bar: float = 8.0):
        self.config = config
        self.nodes = nodes
        self.field = np.searchsorted(config.field_offsets, nodes, side="right") - 1
        self.value = nodes - config.field_offsets[self.field]
        self.index = {int(t): i for i, t in enumerate(nodes)}
        self.dense = adjacency.toarray() if len(nodes) <= 6000 else None
        self.adjacency = adjacency.tocsr()
        z = np.asarray(embeddings, dtype=np.float64)
        self.z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        self.eps = 1e-3 * float(adjacency.data.mean()) if adjacency.nnz else 1e-3
        self.by_field = [np.flatnonzero(self.field == f) for f in range(C.N_FIELDS)]
        missing = [C.FIELDS[f] for f in range(1, C.N_FIELDS) if len(self.by_field[f]) == 0]
        if missing:
            raise MusictlError(f"the style graph has no {', '.join(missing)} tokens to walk on; rebuild it with musictl adjacency")
        self.p_advance = min(1.0, 1.0 / max(notes_per_bar, 1.0))

    def _row(self, node: int, candidates: np.ndarray) -> np.ndarray:
        if node < 0:
            return np.zeros(len(candidates))
        if self.dense is not None:
            return self.dense[node, candidates]
        return np.asarray(self.adjacency[node, candidates].todense()).ravel()

    def _choose(self, candidates: np.ndarray, context: tuple[int, int], temperature: float, rng) -> int:
        weight = self._row(context[0], candidates) + self._row(context[1], candidates) + self.eps
        logits = np.log(weight)
        if context[0] >= 0:
            logits = logits + (self.z[candidates] @ self.z[context[0]]) / temperature
        logits -= logits.max()
        p = np.exp(logits)
        return int(candidates[rng.choice(len(candidates), p=p / p.sum())])

    def walk(self, seeds: np.ndarray, settings: WalkSettings) -> np.ndarray:
        """``(n_notes, 8)`` token ids spanning exactly ``settings.bars`` bars.

        ``seeds`` are seed notes as node indices ``(n, 8)`` (-1 where a token is not a node).
        """
        if settings.bars < 1:
            raise MusictlError("-n must be at least 1 bar")
        if settings.temperature <= 0:
            raise MusictlError("--temperature must be positive")
        rng = np.random.default_rng(settings.seed)
        cfg = self.config
        units = cfg.time_signature_units
        notes: list[list[int]] = []
        previous = seeds[0].copy()  # node per field of the previous note (context)
        bar, position, notes_in_bar = 0, -1, 0
        ts_value = int(self.value[previous[C.TIME_SIGNATURE]]) if previous[C.TIME_SIGNATURE] >= 0 else cfg.time_signature_index[(4, 4)]
        while True:
            if notes and rng.random() < settings.restart:
                previous = seeds[rng.integers(len(seeds))].copy()
            bar_len = int(units[ts_value])
            advance = bool(notes) and (
                notes_in_bar >= settings.max_notes_per_bar or position >= bar_len - 1 or rng.random() < self.p_advance
            )
            allowed_pos = self.by_field[C.POSITION][self.value[self.by_field[C.POSITION]] >= (0 if advance or not notes else position)]
            if not advance and notes and len(allowed_pos[self.value[allowed_pos] < bar_len]) == 0:
                advance = True
            if advance:
                if bar + 1 >= settings.bars:
                    break
                bar, notes_in_bar = bar + 1, 0
                allowed_pos = self.by_field[C.POSITION]
            row = [0] * C.N_FIELDS
            chosen = [-1] * C.N_FIELDS
            row[C.BAR] = bar % cfg.max_bars
            chosen[C.BAR] = self.index.get(int(cfg.field_offsets[C.BAR]) + row[C.BAR], -1)
            context_prev = chosen[C.BAR] if chosen[C.BAR] >= 0 else previous[C.TEMPO]
            for field in range(C.POSITION, C.N_FIELDS):
                candidates = self.by_field[field]
                if field == C.POSITION:
                    limit = bar_len if notes else int(units.max())
                    candidates = allowed_pos[self.value[allowed_pos] < limit]
                    if len(candidates) == 0:
                        candidates = self.by_field[C.POSITION][self.value[self.by_field[C.POSITION]] < limit]
                elif field == C.TIME_SIGNATURE:
                    # The metre is drawn once, for the first note, and kept: one piece, one metre.
                    candidates = candidates[units[self.value[candidates]] > row[C.POSITION]] if not notes else candidates[:0]
                if len(candidates) == 0:  # the grammar fixes the value (metre inside a bar)
                    value = ts_value if field == C.TIME_SIGNATURE else 0
                    node = self.index.get(int(cfg.field_offsets[field]) + value, -1)
                else:
                    node = self._choose(candidates, (context_prev, previous[field]), settings.temperature, rng)
                    value = int(self.value[node])
                row[field], chosen[field] = value, node
                if node >= 0:
                    context_prev = node
            if not advance and notes and row[C.POSITION] >= bar_len:
                continue  # cannot happen by construction; guards a malformed graph
            ts_value = row[C.TIME_SIGNATURE]
            position = row[C.POSITION]
            notes_in_bar += 1
            notes.append(row)
            previous = np.array([c if c >= 0 else p for c, p in zip(chosen, previous)])
        return np.asarray(notes, dtype=np.int64) + C.N_SPECIAL

    def seed_nodes(self, tokens: np.ndarray) -> np.ndarray:
        """Seed notes as node indices (-1 for tokens that are not nodes of this graph)."""
        flat = tokens.astype(np.int64) - C.N_SPECIAL + self.config.field_offsets
        seeds = np.vectorize(lambda t: self.index.get(int(t), -1))(flat) if len(flat) else np.zeros((0, 8), dtype=np.int64)
        seeds = seeds[(seeds[:, 1:] >= 0).sum(1) >= 4] if len(seeds) else seeds
        if len(seeds) == 0:
            raise MusictlError("none of the seed notes share tokens with the style graph; use a prompt in the style's range")
        return seeds

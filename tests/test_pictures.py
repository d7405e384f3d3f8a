"""The pictures a user opens first: ``curves.png`` of every training run and the piano rolls of
``generate-rwr --plot`` / ``musictl demo``. Their data is checked, not their pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from musictl import constants as C
from musictl.curves import curve_panels, plot_curves
from musictl.midi.vocab import TokenizerConfig
from musictl.transfer.plot import piano_roll, piano_roll_figure, piano_roll_png

# metrics.jsonl rows of a real tiny adversarial pre-training (steps 14-19 and 30; 18 steps an epoch),
# with one field's numbers of the eight kept
PRETRAIN_ROWS = [
    {"step": 14, "epoch": 0, "loss": 9.12834, "recover_loss": 8.67362, "masker_loss": 0.45472, "accuracy": 0.3645,
     "lr": 0.00046666666666666666, "notes_per_s": 13384.5},
    {"step": 15, "epoch": 0, "loss": 8.96146, "recover_loss": 8.50983, "masker_loss": 0.45163, "accuracy": 0.40735,
     "lr": 0.0005, "notes_per_s": 13252.2,
     "valid": {"accuracy": 0.46397, "loss": 4.12697, "masked_notes": 680,
               "fields": {"pitch": {"accuracy": 0.09118, "loss": 4.57438, "unigram": 0.09559, "window": 0.15588,
                                    "previous": 0.07206}},
               "masker_spearman": -0.03625, "adversarial_loss_ratio": 0.99743, "diagnostic_notes": 680,
               "frozen_share": 0.0, "field_weights": [0.125] * 8}},
    {"step": 16, "epoch": 0, "loss": 8.79528, "recover_loss": 8.35729, "masker_loss": 0.43799, "accuracy": 0.42036,
     "lr": 0.0004962962962962963, "notes_per_s": 9906.1},
    {"step": 17, "epoch": 0, "loss": 8.65476, "recover_loss": 8.20204, "masker_loss": 0.45272, "accuracy": 0.42026,
     "lr": 0.0004925925925925925, "notes_per_s": 10113.0},
    {"step": 18, "epoch": 1, "loss": 8.54759, "recover_loss": 8.07906, "masker_loss": 0.46852, "accuracy": 0.40935,
     "lr": 0.0004888888888888889, "notes_per_s": 10305.1},
    {"step": 19, "epoch": 1, "loss": 9.22008, "recover_loss": 8.75034, "masker_loss": 0.46974, "accuracy": 0.46912,
     "lr": 0.0004851851851851852, "notes_per_s": 10515.4},
    {"step": 30, "epoch": 1, "loss": 8.15342, "recover_loss": 7.69995, "masker_loss": 0.45347, "accuracy": 0.45,
     "lr": 0.0004444444444444444, "notes_per_s": 12457.1,
     "valid": {"accuracy": 0.47647, "loss": 3.31749, "masked_notes": 680,
               "fields": {"pitch": {"accuracy": 0.07794, "loss": 4.00447, "unigram": 0.09559, "window": 0.15588,
                                    "previous": 0.07206}},
               "masker_spearman": 0.20544, "adversarial_loss_ratio": 1.00283, "diagnostic_notes": 680,
               "frozen_share": 0.0, "field_weights": [0.23817, 0.12683, 0.04706, 0.3382, 0.13385, 0.02508, 0.06025, 0.03056]}},
]


def panel_of(panels, name):
    (panel,) = [p for p in panels if name in p.series]
    return panel


# ----- curves.png -----------------------------------------------------------------------------------------------
def test_curves_of_pretraining_keep_counts_off_the_accuracy_axis_and_the_losses_apart():
    panels = curve_panels(PRETRAIN_ROWS)
    drawn = {name for p in panels for name in p.series}
    assert not drawn & {"valid/masked_notes", "valid/diagnostic_notes", "lr", "notes_per_s"}
    assert not any(name.startswith("valid/fields/") for name in drawn)

    shares = panel_of(panels, "valid/accuracy")
    assert set(shares.series) == {"accuracy", "valid/accuracy", "valid/frozen_share"}
    assert shares.limits == (0.0, 1.0)
    assert panel_of(panels, "valid/masker_spearman").limits == (-1.0, 1.0)
    for panel in panels:  # every number lies in its panel's range
        if panel.limits:
            assert all(panel.limits[0] <= y <= panel.limits[1] for points in panel.series.values() for _, y in points)

    valid_loss, objective = panel_of(panels, "valid/loss"), panel_of(panels, "loss")
    assert valid_loss is not objective
    assert set(objective.series) == {"loss", "recover_loss", "masker_loss"}
    assert "not on the validation loss's scale" in objective.title and "epoch" in objective.title
    assert objective.marks == (18.0,)  # the adversarial weights are renewed at the epoch end
    assert valid_loss.series["valid/loss"] == [(15.0, 4.12697), (30.0, 3.31749)]
    assert panel_of(panels, "valid/adversarial_loss_ratio") not in (valid_loss, objective, shares)


def test_loop_weighted_objectives_mark_each_evaluation():
    rows = [{k: v for k, v in row.items() if k != "valid"} for row in PRETRAIN_ROWS]
    rows[1]["valid"] = {"accuracy": 0.4, "loss": 4.1, "masked_notes": 680}  # mlm: no masker diagnostics
    rows[-1]["valid"] = {"accuracy": 0.5, "loss": 3.3, "masked_notes": 680}
    objective = panel_of(curve_panels(rows), "recover_loss")
    assert objective.marks == (15.0, 30.0)
    assert "evaluation" in objective.title


@pytest.mark.parametrize("rows", [
    [{"epoch": 1, "step": 2, "train_loss": 1.1, "valid_accuracy": 0.53, "valid_macro_f1": 0.49, "valid_loss": 1.05},
     {"epoch": 2, "step": 4, "train_loss": 1.0, "valid_accuracy": 0.64, "valid_macro_f1": 0.55, "valid_loss": 0.99}],
    [{"step": 1, "train_loss": 4.17},
     {"step": 2, "train_loss": 4.16, "valid_loss": 4.157, "valid_loss_per_codebook": [4.13, 4.15, 4.19, 4.15]}],
], ids=["finetune", "lora"])
def test_fine_tuning_and_lora_losses_share_one_panel(rows):
    panels = curve_panels(rows)
    assert set(panel_of(panels, "valid_loss").series) == {"train_loss", "valid_loss"}
    assert all(not p.marks for p in panels)
    assert all("loss" not in name for p in panels if p.limits for name in p.series)


def test_plot_curves_writes_a_png(tmp_path):
    plot_curves(PRETRAIN_ROWS, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_curves([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


# ----- piano rolls --------------------------------------------------------------------------------------------
CONFIG = TokenizerConfig()
ONE_BEAT = int(np.searchsorted(CONFIG.duration_starts, CONFIG.positions_per_beat))


def note(bar, beat, program, pitch, metre=(4, 4)):
    """One token row (ids): a one-beat note at ``beat`` of ``bar``."""
    values = [bar, beat * CONFIG.positions_per_beat, program, pitch, ONE_BEAT, 20, CONFIG.time_signature_index[metre], 10]
    return [v + C.N_SPECIAL for v in values]


def band_piece():
    """Bar 1 and 2 in 4/4, bar 3 in 3/4: a piano, a bass and drums (kick, snare)."""
    rows = []
    for bar, metre in ((0, (4, 4)), (1, (4, 4)), (2, (3, 4))):
        for beat in range(metre[0]):
            rows.append(note(bar, beat, 0, 60 + beat, metre))
            rows.append(note(bar, beat, 32, 40, metre))
            rows.append(note(bar, beat, C.DRUM_PROGRAM, 36 if beat % 2 == 0 else 38, metre))
    return np.array(rows)


def test_a_piano_roll_puts_drums_in_their_own_lane_names_instruments_and_draws_bars():
    roll = piano_roll(band_piece(), CONFIG)
    assert [p.name for p in roll.parts] == ["Acoustic Grand Piano", "Acoustic Bass"]
    assert C.DRUM_PROGRAM not in [p.program for p in roll.parts]  # drum keys are not on the pitch axis
    assert roll.drums is not None and sorted(set(roll.drums.pitch.tolist())) == [36, 38]
    assert roll.drum_sounds == [(36, "Bass Drum 1"), (38, "Acoustic Snare")]
    np.testing.assert_array_equal(roll.bar_lines, [0, 4, 8, 11])  # the 3/4 bar ends 3 beats after it starts
    np.testing.assert_array_equal(roll.parts[1].start, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])


def test_the_piano_roll_figure_shows_the_lanes_names_and_bar_lines(tmp_path):
    import matplotlib.pyplot as plt

    fig = piano_roll_figure(piano_roll(band_piece(), CONFIG), "a band")
    pitched, drums = fig.axes
    assert [t.get_text() for t in pitched.get_legend().get_texts()] == ["Acoustic Grand Piano", "Acoustic Bass"]
    assert [t.get_text() for t in drums.get_yticklabels()] == ["Bass Drum 1", "Acoustic Snare"]
    for ax in (pitched, drums):
        vertical = sorted(line.get_xdata()[0] for line in ax.get_lines())
        assert vertical == [0, 4, 8, 11]
    plt.close(fig)

    piano_roll_png(band_piece(), CONFIG, tmp_path / "roll.png", "a band")
    assert (tmp_path / "roll.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_piano_roll_without_drums_has_one_lane():
    pitched_only = band_piece()[band_piece()[:, C.INSTRUMENT] != C.DRUM_PROGRAM + C.N_SPECIAL]
    roll = piano_roll(pitched_only, CONFIG)
    assert roll.drums is None and roll.drum_sounds == []
    import matplotlib.pyplot as plt

    fig = piano_roll_figure(roll, "no drums")
    assert len(fig.axes) == 1
    plt.close(fig)

"""The LSTM plug-in: train on one dataset, then measure the cell-state balance (Table 1 rows).

For each job (dataset x seed): generate the data (:mod:`.data`), build and train
``nn.LSTM(1, H)`` + read-out (:mod:`.model`), then measure the reaction
``i_t * C~_t`` and diffusion ``(1 - f_t) * C_{t-1}`` at every step with the probe
(:mod:`.probe`) through the shared balance meter, in the configured mode
(``generate``, the paper's, or ``teacher``). The same measurement is made on two
controls in the same run:

* ``untrained``: the network with its initial weights, before any training;
* ``shuffled``: the trained weights with the entries of every tensor permuted.

If R ~ 1 were a property of any bounded LSTM rather than of a trained one, the
controls would show it too.

The train and test sets are run inputs (``log_input``); the trained network is logged
as the MLflow model ``model``, and ``pretrained`` (``--model runs:/<id>/model``)
measures such a model again, with its controls, without training. Only the settings
of the run's dataset are params (:meth:`LSTMSystem.unused_settings`).

The data are generated (``sine``, ``lorenz``, ``vanderpol``) or the user's own
(``csv:FILE``, ``npy:FILE``; :mod:`.series_file`), which ``check()`` reads whole
before any run exists, so that a bad file is refused in one line.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, confloat

from rdbench.balance import BalanceMeter, BalanceResult
from rdbench.config import ConfigError, Settings
from rdbench.systems.base import Job, Outcome, RunContext, System
from rdbench.systems.lstm.data import (
    LorenzSettings,
    SineSettings,
    SolverSettings,
    VanDerPolSettings,
    make_dataset,
    raw_sequences,
    split_counts,
)
from rdbench.systems.lstm.model import (
    InitScheme,
    NextStepLSTM,
    build_model,
    last_value_loss,
    shuffled_copy,
    train_model,
)
from rdbench.systems.lstm.probe import measure_generation, measure_teacher_forced
from rdbench.systems.lstm.series_file import FILE_KINDS, FileSeriesSettings
from rdbench.systems.records import ModelRecord, dataset_record, is_logged_model, load_logged_model

BYTES_PER_VALUE = 32  # a generated value's memory: its float64 ODE state, float32 copies, the split


class EarlyStop(Settings):
    """End training when the training loss stalls for ``patience`` epochs (0 disables)."""

    patience: NonNegativeInt
    min_delta: NonNegativeFloat


class MeasureSettings(Settings):
    """How the balance is measured after training."""

    mode: Literal["generate", "teacher"]
    samples: PositiveInt  # rows of the meter: seed windows / test sequences (the first ones)
    seed_length: PositiveInt  # generate: values of the seed window read before generating
    generate_steps: PositiveInt  # generate: autoregressive steps
    record_warmup: bool  # generate: record the warm-up steps too (C_{t-1} = 0 at the first)
    plot_samples: NonNegativeInt  # generated-vs-true panels in the plot (0: no plot)


class LSTMSettings(Settings):
    dataset: Literal["sine", "lorenz", "vanderpol", "csv", "npy"]
    data_path: str | None = None  # csv / npy: the file
    file: FileSeriesSettings  # csv / npy: how the file is read
    n_sequences: PositiveInt | None  # generated: how many; csv / npy: at most this many (null: all)
    seq_len: PositiveInt | None  # generated: values per sequence; csv / npy: at most this many (null: all)
    test_fraction: confloat(gt=0, lt=1)
    sine: SineSettings
    lorenz: LorenzSettings
    vanderpol: VanDerPolSettings
    solver: SolverSettings
    hidden_size: PositiveInt
    init: InitScheme
    epochs: PositiveInt
    batch_size: PositiveInt | None  # null: full batch, one Adam step per epoch
    learning_rate: PositiveFloat
    early_stop: EarlyStop
    measure: MeasureSettings
    threads: PositiveInt | None  # torch CPU threads while a job runs (null: PyTorch's default)
    pretrained: str | None = None  # a model logged by an earlier run (runs:/<id>/model): measured, not trained


class LSTMSystem(System):
    """Plug-in: one trained LSTM per job, measured beside its untrained and shuffled controls."""

    name = "lstm"
    Settings = LSTMSettings

    def check(self, settings: LSTMSettings) -> None:
        """Refuse what cannot run; a user's file is read whole (and refused in one line) here."""
        s = settings
        n_sequences, seq_len, what = self._data_dims(s)
        if seq_len < 2:
            raise ConfigError(f"seq_len={seq_len}{what}: next-step prediction needs sequences of at least 2 values")
        n_train, n_test = split_counts(n_sequences, s.test_fraction)
        if n_train < 1 or n_test < 1:
            raise ConfigError(
                f"n_sequences={n_sequences}{what} with test_fraction={s.test_fraction} leaves "
                f"{n_train} train and {n_test} test sequences; both need at least 1"
            )
        m = s.measure
        if m.samples > n_test:
            raise ConfigError(f"measure.samples={m.samples} exceeds the {n_test} test sequences{what}")
        if m.mode == "generate" and m.seed_length > seq_len:
            raise ConfigError(f"measure.seed_length={m.seed_length} exceeds seq_len={seq_len}{what}")
        if s.sine.freq_min > s.sine.freq_max:
            raise ConfigError(f"sine.freq_min={s.sine.freq_min} exceeds sine.freq_max={s.sine.freq_max}")
        if s.pretrained is not None:
            if not is_logged_model(s.pretrained):
                raise ConfigError(f"pretrained={s.pretrained!r}: the LSTM reloads only models that rdbench logged "
                                  "(runs:/<run id>/model, models:/..., or such a model's folder)")
            load_logged_model(s.pretrained, self.name).require(network_config(s))

    def memory_bytes(self, settings: Sequence[LSTMSettings]) -> int | None:
        """A lower bound of one job's memory (jobs run one at a time), from the settings alone: the
        generated sequences (:data:`BYTES_PER_VALUE` each: the solver's float64 states, the float32
        copies, the train/test split), the LSTM activations one training batch keeps for backward
        (4 gates, cell and hidden state per value and unit, forward and gradient) and the measurement's
        sequences. A user's file is not estimated: ``check()`` has read it whole."""
        s = settings[0]
        if s.dataset in FILE_KINDS or s.n_sequences is None or s.seq_len is None or s.pretrained:
            return None
        n_train, _ = split_counts(s.n_sequences, s.test_fraction)
        batch = n_train if s.batch_size is None else min(s.batch_size, n_train)
        activations = batch * s.seq_len * s.hidden_size * 6 * 2 * 4
        measured = s.measure.samples * (s.seq_len + s.measure.generate_steps) * (2 * s.hidden_size + 1) * 4
        return s.n_sequences * s.seq_len * BYTES_PER_VALUE + activations + measured

    def unused_settings(self, settings: LSTMSettings) -> set[str]:
        """The other datasets' settings (a sine run logs no Lorenz or Van der Pol parameters), the
        ODE solver unless an ODE is integrated, and the generation knobs in teacher mode."""
        generators = {"sine", "lorenz", "vanderpol"}
        unused = generators - {settings.dataset}
        if settings.dataset in FILE_KINDS:
            unused.add("solver")
        else:
            unused |= {"data_path", "file"} | ({"solver"} if settings.dataset == "sine" else set())
        if settings.measure.mode == "teacher":
            unused |= {f"measure.{k}" for k in ("seed_length", "generate_steps", "record_warmup", "plot_samples")}
        return unused

    @staticmethod
    def _data_dims(s: LSTMSettings) -> tuple[int, int, str]:
        """(sequences, values per sequence, where they come from for messages); reads a user's file."""
        if s.dataset not in FILE_KINDS:
            if s.data_path is not None:
                raise ConfigError(f"data_path applies to the datasets {' and '.join(FILE_KINDS)}, not to {s.dataset!r}")
            for key in ("n_sequences", "seq_len"):
                if getattr(s, key) is None:
                    raise ConfigError(f"{key} must be set for the generated dataset {s.dataset!r}")
            return s.n_sequences, s.seq_len, ""
        if not s.data_path:
            raise ConfigError(f"dataset {s.dataset!r} needs data_path (on the command line: --dataset {s.dataset}:PATH)")
        raw = raw_sequences(s, 0)
        what = f" (from {s.dataset}:{s.data_path}, one sequence per {s.file.layout[:-1]})"
        n_train, _ = split_counts(raw.shape[0], s.test_fraction)
        if s.file.normalise and n_train and raw[:n_train].std() == 0:
            raise ConfigError(f"{s.dataset}:{s.data_path}: the training values are all {raw[0, 0]:g}; "
                              "cannot z-score (set file.normalise=false)")
        return raw.shape[0], raw.shape[1], what

    def run(self, jobs: Sequence[Job], ctx: RunContext) -> list[Outcome]:
        outcomes = []
        for job in jobs:
            with torch_threads(job.settings.threads):
                outcomes.append(self.run_one(job, ctx))
        return outcomes

    def run_one(self, job: Job, ctx: RunContext) -> Outcome:
        s: LSTMSettings = job.settings
        self.check(s)
        device = ctx.device
        data = make_dataset(s, job.seed)
        train = torch.as_tensor(data.train, dtype=torch.float32, device=device)
        test = torch.as_tensor(data.test, dtype=torch.float32, device=device)
        source = s.data_path if s.dataset in FILE_KINDS else "code:rdbench.systems.lstm.data"
        label = dataset_label(s)
        reloaded = s.pretrained is not None
        if not reloaded:
            job.recorder.log_input(dataset_record(f"{label}/train", source, data.train, "training"))
        job.recorder.log_input(dataset_record(f"{label}/test", source, data.test, "evaluation"))

        model = build_model(s.hidden_size, s.init, job.seed).to(device)
        untrained = copy.deepcopy(model)
        if reloaded:  # a logged network: its weights (strict), no training
            logged = load_logged_model(s.pretrained, self.name)
            job.recorder.log_dict(logged.config, "reloaded/model.json")
            logged.load_into(model, device)
            history = None
        else:
            with ctx.progress(s.epochs, f"lstm {s.dataset} seed={job.seed}") as bar:
                history = train_model(
                    model, train, test, s.epochs, s.learning_rate, s.batch_size, job.seed,
                    s.early_stop.patience, s.early_stop.min_delta,
                    on_epoch=lambda *_: bar.update(1),
                )
            epochs = list(range(1, history.epochs_run + 1))
            job.recorder.log_series("train_loss", history.train_loss, epochs)
            job.recorder.log_series("test_loss", history.test_loss, epochs)

        shuffled = shuffled_copy(model, job.seed + 1)
        balance, generation = measure(model, test, s.measure)
        controls = {
            "untrained": measure(untrained, test, s.measure)[0],
            "shuffled": measure(shuffled, test, s.measure)[0],
        }

        if not reloaded:
            job.recorder.log_model(ModelRecord(
                self.name, model,
                {**network_config(s), "init": s.init, "data_offset": data.offset, "data_scale": data.scale,
                 "dataset": label, "case": job.case, "seed": job.seed, "profile": job.profile,
                 "config_hash": job.config_hash, "epochs_run": history.epochs_run},
                np.asarray(data.test[:1], dtype=np.float32),
            ))
        if s.measure.mode == "generate" and s.measure.plot_samples:
            job.recorder.log_figure(
                generation_figure(generation, test, s.measure, dataset_label(s)), "plots/generated_vs_true.png"
            )
        return Outcome(
            balance=balance,
            controls=controls,
            metrics={
                **({} if history is None else {
                    "train_loss_final": history.train_loss[-1],
                    "test_loss_final": history.test_loss[-1],
                    "epochs_run": float(history.epochs_run),
                    "early_stopped": float(history.stopped_early),
                }),
                "test_loss_last_value": last_value_loss(test),
                "train_sequences": float(train.shape[0]),
                "test_sequences": float(test.shape[0]),
                "sequence_length": float(train.shape[1]),
            },
        )


def network_config(s: LSTMSettings) -> dict:
    """What shapes the network: a logged model is reloaded only with settings that match it."""
    return {"hidden_size": s.hidden_size}


def dataset_label(s: LSTMSettings) -> str:
    """``sine``, or ``csv:<file name>`` for the user's file (its whole path is the data_path param)."""
    return f"{s.dataset}:{Path(s.data_path).name}" if s.dataset in FILE_KINDS else s.dataset


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: leave the setting alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(model: NextStepLSTM, test: torch.Tensor, m: MeasureSettings) -> tuple[BalanceResult, torch.Tensor | None]:
    """The balance of ``model`` on the first ``m.samples`` test sequences (and, in generate mode, what it generated)."""
    rows = test[: m.samples]
    meter = BalanceMeter(rows.shape[0], device=rows.device)
    if m.mode == "generate":
        gen = measure_generation(model, rows[:, : m.seed_length], m.generate_steps, meter, m.record_warmup)
        return meter.result(), gen.predictions
    measure_teacher_forced(model, rows[:, :-1], meter)
    return meter.result(), None


def generation_figure(generated: torch.Tensor, test: torch.Tensor, m: MeasureSettings, dataset: str):
    """Seed window, generated continuation and the true continuation (where the data has one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(m.plot_samples, generated.shape[0])
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.2 * n), squeeze=False, sharex=True)
    seed_t = np.arange(m.seed_length)
    gen_t = m.seed_length + np.arange(generated.shape[1])
    for row, ax in enumerate(axes[:, 0]):
        truth = test[row].cpu().numpy()
        ax.plot(seed_t, truth[: m.seed_length], color="black", lw=1.2, label="seed window")
        ax.plot(np.arange(m.seed_length, len(truth)), truth[m.seed_length :], color="grey", lw=1.0, ls="--", label="true")
        ax.plot(gen_t, generated[row].cpu().numpy(), color="tab:red", lw=1.2, label="generated")
        ax.axvline(m.seed_length - 0.5, color="black", lw=0.5, alpha=0.5)
        ax.set_ylabel(f"test {row}")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=3)
    axes[0, 0].set_title(f"LSTM on {dataset}: generated vs true (model units)")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    plt.close(fig)
    return fig

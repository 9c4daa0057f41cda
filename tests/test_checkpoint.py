"""Device checkpoints (kernels/core/checkpoint, tinytrain_tflm.runtime.checkpoint): Python's reader and writer,
`export --checkpoint`, and on an emulated Cortex-M7 the firmware's save and restore through power cuts,
corrupt slots and a foreign checkpoint, with stochastic rounding (its generators' states are checkpointed), and
the harness's run-time learning rate.

The independent references: the host's x86 TFLM running the same training steps (its variables, written by
Python, must equal the device's slot byte for byte), Python's model of the rounding generator
(optimizer.advance_seed), the model's own constants for the pretrained state, and zlib's CRC-32. The device
tests need the cross tools and TFLM's sources, as tests/test_device.py does.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from conftest import require
from models import int8_model

import tinytrain_tflm as tt
from tinytrain_tflm.backend import schema
from tinytrain_tflm.backend.schema_generated import CONTROL_BACKWARD, CONTROL_UPDATE
from tinytrain_tflm.errors import TinyTrainError
from tinytrain_tflm.firmware import device
from tinytrain_tflm.frontend import ir
from tinytrain_tflm.passes import optimizer
from tinytrain_tflm.runtime import checkpoint
from tinytrain_tflm.target import target

TRAIN = CONTROL_BACKWARD | CONTROL_UPDATE
STEPS = 3  # per training burst
ARENA = 256 * 1024
# tt_status values the harness prints for a refused slot (kernels/core/tt_types.h).
BAD_MAGIC, BAD_CHECKSUM, FOREIGN = -4, -7, -11


@pytest.fixture(scope="module")
def models():
    """small_cnn training every layer with momentum and stochastic rounding (each TT_SGD's generator state is
    part of a checkpoint), and the same model at another learning rate: the same entries, another identity.
    Every compile option these tests rely on is given."""
    source = int8_model("small_cnn")
    sgd = [tt.SGD(lr=lr, momentum=0.9, rounding="stochastic", seed=1) for lr in (0.05, 0.02)]
    options = {"gradient": "float32", "tiles": None, "flash_requantization": False, "overlap_buffers": True}
    return [tt.compile(source, update="all", optimizer=o, **options).bytes for o in sgd]


def _nbytes(graph: tt.Graph, entry: int) -> int:
    if entry & checkpoint.ROUNDING_STATE:
        return 4
    return int(np.prod(graph.tensors[entry].shape)) * np.dtype(graph.tensors[entry].dtype).itemsize


def _state(model: bytes, rng) -> dict[int, bytes]:
    """Random bytes for every checkpointed entry (a rounding state is never 0)."""
    graph = tt.read_graph(model)
    return {
        e: rng.integers(1, 2**32, dtype=np.uint32).tobytes()
        if e & checkpoint.ROUNDING_STATE
        else rng.integers(0, 256, _nbytes(graph, e), np.uint8).tobytes()
        for e in checkpoint.state_entries(graph)
    }


def _rounding_states(model: bytes, draws_per_element: int) -> dict[int, bytes]:
    """Each TT_SGD's generator state after `draws_per_element` stochastic updates from its seed, by Python's
    model of the kernel's xorshift32 (one number per updated element per update)."""
    graph = tt.read_graph(model)
    trained_shapes = {p.variable: p.trained_shape for p in tt.Trainer(model).parameters}
    states = {}
    for index, op in enumerate(graph.ops):
        if op.kind == "TT_SGD":
            seed = schema.decode_blob("SGD", op.custom_options)["seed"] & 0xFFFFFFFF
            draws = draws_per_element * int(np.prod(trained_shapes[op.inputs[0]]))
            states[checkpoint.ROUNDING_STATE | index] = struct.pack("<I", optimizer.advance_seed(seed, draws))
    return states


def test_python_writes_and_reads_checkpoints_and_storage_images(models, rng):
    model, _ = models
    graph = tt.read_graph(model)
    entries = checkpoint.state_entries(graph)
    sgd = [(i, op) for i, op in enumerate(graph.ops) if op.kind == "TT_SGD"]
    # Parameters with their momentum and their generator's state.
    assert entries == [e for i, op in sgd for e in (op.inputs[0], op.inputs[3], 0x80000000 | i)]
    first, second = _state(model, rng), _state(model, rng)
    record = checkpoint.write(model, first, 7)
    assert len(record) == checkpoint.size(model)
    magic, version, kind, payload, crc = struct.unpack_from("<IHHII", record)
    assert (record[:4], version, kind, payload) == (b"TTCK", 2, 1, len(record) - 16)
    assert crc == zlib.crc32(record[16:])
    assert struct.unpack_from("<II", record, 16) == (7, zlib.crc32(model))
    assert checkpoint.read(model, record) == checkpoint.Checkpoint(7, first)

    slot = checkpoint.size(model) + 40
    image = bytearray(checkpoint.erased_storage(model, slot))
    image[: len(record)] = record
    newer = checkpoint.write(model, second, 8)
    image[slot : slot + len(newer)] = newer
    assert checkpoint.read(model, bytes(image)) == checkpoint.Checkpoint(8, second)
    # Sequence numbers wrap: 0 follows 2^32 - 1.
    image[: len(record)] = checkpoint.write(model, first, 2**32 - 1)
    image[slot : slot + len(newer)] = checkpoint.write(model, second, 0)
    assert checkpoint.read(model, bytes(image)).values == second


def test_refused_checkpoints_are_named(models, rng):
    model, other = models
    state = _state(model, rng)
    record = bytearray(checkpoint.write(model, state, 1))
    record[100] ^= 0x01
    with pytest.raises(TinyTrainError, match=r"^not a checkpoint of this model: corrupt \(CRC-32 mismatch\)$"):
        checkpoint.read(model, bytes(record))
    foreign = checkpoint.write(other, state, 1)  # the same tensors, another model
    with pytest.raises(TinyTrainError, match=r"^not a checkpoint of this model: written for another training model"):
        checkpoint.read(model, foreign)
    newer = bytearray(checkpoint.write(model, state, 1))
    newer[4] = 3
    with pytest.raises(TinyTrainError, match=r"format version 3, this tinytrain_tflm reads 2$"):
        checkpoint.read(model, bytes(newer))
    newer[4] = 1
    with pytest.raises(TinyTrainError, match=r"format version 1, this tinytrain_tflm reads 2 \(version 1 has no rounding"):
        checkpoint.read(model, bytes(newer))
    with pytest.raises(TinyTrainError, match=r"^no valid checkpoint of this model: slot 0 empty .*, slot 1 empty"):
        checkpoint.read(model, checkpoint.erased_storage(model))
    with pytest.raises(TinyTrainError, match="holds entries"):
        checkpoint.write(model, dict(list(state.items())[1:]), 1)
    rounding = next(e for e in state if e & checkpoint.ROUNDING_STATE)
    with pytest.raises(TinyTrainError, match="is 0, which xorshift32 never reaches"):
        checkpoint.write(model, state | {rounding: bytes(4)}, 1)


def test_export_takes_a_checkpoint(models, rng, tmp_path):
    """A checkpoint holding a trained host state exports, through the API and the CLI, exactly the inference
    model the trained Trainer exports; the checkpoint file is an input the CLI never overwrites."""
    from test_cli import _cli

    model, _ = models
    trainer = tt.Trainer(model)
    for _ in range(STEPS):
        trainer.step(rng.uniform(-1, 1, (12, 12, 1)).astype(np.float32), int(rng.integers(0, 3)))
    values = trainer.tensor_values()
    state = checkpoint.initial_values(model) | {p.variable: values[p.name] for p in trainer.parameters}
    state |= _rounding_states(model, STEPS)  # where the trainer's generators are
    data = checkpoint.write(model, state, 3)
    expected = trainer.export()
    applied = checkpoint.apply(model, data)
    assert tt.Trainer(applied).export() == expected
    assert tt.Trainer(model).export() != expected

    # The rounding states become the seeds, as the trainer's own save (Trainer.training_model) advances them.
    def seeds(training: bytes) -> list[int]:
        return [schema.decode_blob("SGD", op.custom_options)["seed"] for op in tt.read_graph(training).ops if op.kind == "TT_SGD"]

    assert seeds(applied.bytes) == seeds(trainer.training_model().bytes) != seeds(model)

    training, saved, tuned = tmp_path / "train.tflite", tmp_path / "state.ckpt", tmp_path / "tuned.tflite"
    training.write_bytes(model)
    saved.write_bytes(data)
    result = _cli("export", str(training), "--checkpoint", str(saved), "-o", str(tuned))
    assert result.returncode == 0, result.stderr
    assert tuned.read_bytes() == expected
    refused = _cli("export", str(training), "--checkpoint", str(saved), "-o", str(saved))
    assert refused.returncode != 0 and saved.read_bytes() == data
    saved.write_bytes(checkpoint.erased_storage(model))
    result = _cli("export", str(training), "--checkpoint", str(saved), "-o", str(tuned))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("error: no valid checkpoint of this model: slot 0 empty (no checkpoint magic), "
                                          "slot 1 empty (no checkpoint magic)")  # fmt: skip
    assert len(result.stderr.strip().splitlines()) == 1


# -- on the emulated Cortex-M7 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def firmware(models):
    require(device.check_tools)
    require(device.locate_sources)
    return device.build_firmware(models[0], target("cortex-m7", "reference"))


def _script(model: bytes, entries, samples, labels) -> list:
    """Invokes for `entries`: "train" (the next sample), or a harness action (SAVE_CHECKPOINT, DUMP_STATE)."""
    graph = tt.read_graph(model)
    sample = graph.tensors[graph.inputs[0]]
    quantized = [sample.quantization.quantize(x[None], sample.dtype) for x in samples]
    invokes, used = [], 0
    for entry in entries:
        if entry == "train":
            invokes.append((TRAIN, [int(labels[used])], quantized[used]))
            used += 1
        else:
            invokes.append((entry, [0], np.zeros_like(quantized[0])))
    return invokes


def _split(model: bytes, dump: bytes) -> dict[int, bytes]:
    """A DUMP_STATE line's bytes, by checkpointed entry."""
    graph = tt.read_graph(model)
    values, offset = {}, 0
    for e in checkpoint.state_entries(graph):
        nbytes = _nbytes(graph, e)
        values[e] = dump[offset : offset + nbytes]
        offset += nbytes
    assert offset == len(dump)
    return values


def _run(firmware, invokes, flash, cut=None) -> device.Run:
    result = device.run(firmware, ARENA, invokes, flash=flash, cut=cut)
    assert result.error is None, result.error
    return result


def test_power_cut_mid_checkpoint_restores_the_last_good_state(models, firmware, rng, tmp_path):
    """Train, checkpoint, train on, and cut the power while the next checkpoint is written: mid-data, and
    with the data whole but the header half written. Each reboot restores the previous checkpoint bit for bit,
    and training resumed from it reaches the state uninterrupted training reached (momentum and the stochastic
    rounding generators restored). The slot the device wrote equals what Python writes for the same state, and
    that state is the host runtime's after the same steps, the generators where Python's model of them is."""
    model, _ = models
    samples = rng.uniform(-1, 1, (2 * STEPS, 12, 12, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 2 * STEPS)
    save, dump = device.SAVE_CHECKPOINT, device.DUMP_STATE
    record = checkpoint.size(model)
    flash = tmp_path / "flash.bin"
    flash.write_bytes(checkpoint.erased_storage(model))

    # Boot on erased flash (pretrained), train, save (slot 0), train on, save again with the power cut midway.
    first = _script(model, [dump, *["train"] * STEPS, save, dump, *["train"] * STEPS, dump, save], samples, labels)
    a = _run(firmware, first, flash, cut=record + record // 2)
    assert a.checkpoints == [("none", BAD_MAGIC, BAD_MAGIC), ("saved", 0, 1), ("power_cut", record + record // 2)]
    pretrained, good, uninterrupted = a.states
    # The model's constants, zero momentum, each generator at its seed.
    assert _split(model, pretrained) == checkpoint.initial_values(model)
    assert good != pretrained != uninterrupted != good
    assert _rounding_states(model, STEPS).items() <= _split(model, good).items()
    assert _rounding_states(model, 2 * STEPS).items() <= _split(model, uninterrupted).items()

    # Python and C write the same bytes for the same state.
    written = flash.read_bytes()
    assert checkpoint.write(model, _split(model, good), 1) == written[:record]
    assert checkpoint.read(model, written) == checkpoint.Checkpoint(1, _split(model, good))
    # The state itself against the host runtime after the same steps: parameters bit for bit; float32 momentum
    # to rounding, since GCC contracts the Cortex-M build's multiply-adds into fused ones (x86-64 does not).
    host = tt.Interpreter(model, 4 << 20, preserve_all_tensors=True)
    for control, label, sample in first[1 : 1 + STEPS]:
        host.run(
            [sample, np.array(label, np.int32), np.array([control], np.int32), np.zeros(1, np.float32)]
        )  # 0: the compiled rate
    for tensor, value in _split(model, good).items():
        if tensor & checkpoint.ROUNDING_STATE:
            continue  # checked against Python's generator above
        expected = host.tensor(tensor)
        on_device = np.frombuffer(value, expected.dtype).reshape(expected.shape)
        if expected.dtype == np.float32:
            np.testing.assert_allclose(on_device, expected, rtol=1e-5, atol=1e-7)
        else:
            assert on_device.tobytes() == expected.tobytes(), tensor

    # Reboot: slot 0 restored; train the same steps again and cut with the data whole, the header half there.
    resume = _script(model, [dump, *["train"] * STEPS, dump, save], samples[STEPS:], labels[STEPS:])
    b = _run(firmware, resume, flash, cut=record - 8)
    assert b.checkpoints == [("restored", 0, 1), ("power_cut", record - 8)]
    assert b.states == [good, uninterrupted]

    # Reboot again: still slot 0; this time the save completes, into slot 1.
    c = _run(firmware, resume, flash)
    assert c.checkpoints == [("restored", 0, 1), ("saved", 1, 2)]
    assert c.states == [good, uninterrupted]
    d = _run(firmware, _script(model, [dump], samples, labels), flash)
    assert d.checkpoints == [("restored", 1, 2)] and d.states == [uninterrupted]
    assert checkpoint.read(model, flash.read_bytes()) == checkpoint.Checkpoint(2, _split(model, uninterrupted))


def test_corrupt_or_foreign_checkpoints_fall_back(models, firmware, rng, tmp_path):
    """A flipped byte in the newest slot falls back to the older one; in both, or a checkpoint of another
    model, to the pretrained weights; each slot's refusal is reported."""
    model, other = models
    flash = tmp_path / "flash.bin"
    slot = checkpoint.size(model)
    older, newer = _state(model, rng), _state(model, rng)
    image = bytearray(checkpoint.erased_storage(model))
    image[:slot] = checkpoint.write(model, older, 4)
    image[slot:] = checkpoint.write(model, newer, 5)
    image[slot + slot // 2] ^= 0x10
    flash.write_bytes(bytes(image))
    dump = _script(model, [device.DUMP_STATE], np.zeros((1, 12, 12, 1), np.float32), [0])
    fallback = _run(firmware, dump, flash)
    assert fallback.checkpoints == [("restored", 0, 4)]
    assert _split(model, fallback.states[0]) == older

    empty = flash.with_name("empty.bin")
    empty.write_bytes(checkpoint.erased_storage(model))
    pretrained = _run(firmware, dump, empty).states[0]
    image[100] ^= 0x01
    flash.write_bytes(bytes(image))
    corrupt = _run(firmware, dump, flash)
    assert corrupt.checkpoints == [("none", BAD_CHECKSUM, BAD_CHECKSUM)] and corrupt.states == [pretrained]

    image = bytearray(checkpoint.erased_storage(model))
    image[:slot] = checkpoint.write(other, older, 9)  # same tensors, another model's identity
    flash.write_bytes(bytes(image))
    foreign = _run(firmware, dump, flash)
    assert foreign.checkpoints == [("none", FOREIGN, BAD_MAGIC)] and foreign.states == [pretrained]


def _first_rollback(losses, bound: float, patience: int) -> int | None:
    """Where tt_divergence_guard asks for a rollback: the step ending the first run of `patience` losses above
    `bound` (or not finite)."""
    run = 0
    for step, loss in enumerate(losses):
        run = 0 if loss <= bound else run + 1
        if run == patience:
            return step
    return None


def test_guard_skips_bad_samples_and_rolls_back_a_divergence(models, firmware, rng, tmp_path):
    """guard=BOUND:PATIENCE: a label out of range and a sample at the int8 limits everywhere are skipped and
    counted, the state untouched; two training steps in a row with a loss above the bound roll back to the
    last checkpoint. The bound comes from an unguarded run of the same steps: the highest one whose first
    rollback falls after the checkpoint. The guarded run repeats that run's losses up to the rollback (the
    skipped samples changed nothing) and rolls back exactly where a Python model of the guard says."""
    model, _ = models
    count, before = 10, 3  # training steps, of which the first `before` come before the checkpoint
    samples = rng.uniform(-1, 1, (count, 12, 12, 1)).astype(np.float32)
    plain = _script(model, ["train"] * count, samples, rng.integers(0, 3, count))
    flash = tmp_path / "flash.bin"
    flash.write_bytes(checkpoint.erased_storage(model))
    losses = [float(invoke.loss) for invoke in _run(firmware, plain, flash).invokes]
    ordered = sorted(set(losses), reverse=True)
    # float32 bounds, as the device compares them.
    bounds = [float(np.float32((high + low) / 2)) for high, low in zip(ordered, ordered[1:], strict=False)]
    bound = next(b for b in bounds if (_first_rollback(losses, b, 2) or -1) >= before)
    trip = _first_rollback(losses, bound, 2)

    save, dump = device.SAVE_CHECKPOINT, device.DUMP_STATE
    any_sample = plain[0][2]
    saturated = np.where(np.arange(144) % 2, 127, -128).astype(np.int8).reshape(1, 12, 12, 1)
    guarded = [
        *plain[:before],
        (save, [0], any_sample),
        (dump, [0], any_sample),
        (TRAIN, [3], any_sample),  # label 3 of classes 0-2
        (TRAIN, [0], saturated),
        (dump, [0], any_sample),
        *plain[before : trip + 1],
        (dump, [0], any_sample),
    ]
    flash.write_bytes(checkpoint.erased_storage(model))
    run = device.run(firmware, ARENA, guarded, flash=flash, guard=(bound, 2))
    assert run.error is None, run.error
    assert run.skipped == [(before + 2, "label"), (before + 3, "saturated")]
    assert [float(invoke.loss) for invoke in run.invokes] == losses[: trip + 1]
    assert run.rollbacks == [(trip + 5, 0, 1)]  # to slot 0's checkpoint (sequence 1)
    assert run.guard_totals == (1, 1, 1)
    saved, after_skips, after_rollback = run.states
    assert saved == after_skips == after_rollback
    assert checkpoint.read(model, flash.read_bytes()).values == _split(model, saved)


def test_harness_sets_the_learning_rate_at_run_time(models, firmware, rng, tmp_path):
    """A SET_LEARNING_RATE entry writes the model's learning-rate input for the invokes after it, as a firmware's
    schedule does: two steps at the compiled rate, two at 0.01, two back at the compiled one (0). The device's
    parameters equal the host runtime's given the same rates, bit for bit, and not those of the compiled rate
    throughout."""
    model, _ = models
    count = 6
    samples = rng.uniform(-1, 1, (count, 12, 12, 1)).astype(np.float32)
    steps = _script(model, ["train"] * count, samples, rng.integers(0, 3, count))
    rates = [0.0, 0.0, 0.01, 0.01, 0.0, 0.0]  # 0: the compiled rate
    dump = _script(model, [device.DUMP_STATE], samples, [0])
    script = [*steps[:2], device.set_learning_rate(0.01, steps[0]), *steps[2:4], device.set_learning_rate(0, steps[0]),
              *steps[4:], *dump]  # fmt: skip
    flash = tmp_path / "flash.bin"
    flash.write_bytes(checkpoint.erased_storage(model))
    (state,) = _run(firmware, script, flash).states
    with pytest.raises(TinyTrainError, match="must be > 0, or 0 for the compiled one; got -0.5"):
        device.set_learning_rate(-0.5, steps[0])

    def host_parameters(step_rates: list[float]) -> dict[int, bytes]:
        host = tt.Interpreter(model, 4 << 20, preserve_all_tensors=True)
        for (control, label, sample), rate in zip(steps, step_rates, strict=True):
            host.run([sample, np.array(label, np.int32), np.array([control], np.int32), np.array([rate], np.float32)])
        graph = tt.read_graph(model)
        return {t: host.tensor(t).tobytes() for t in checkpoint.state_entries(graph)
                if not t & checkpoint.ROUNDING_STATE and graph.tensors[t].dtype != np.float32}  # fmt: skip

    expected = host_parameters(rates)
    on_device = {t: value for t, value in _split(model, state).items() if t in expected}
    assert on_device == expected
    assert on_device != host_parameters([0.0] * count)


def test_int8_gradients_scale_histories_are_checkpointed(models, rng, tmp_path):
    """With int8 gradients each gradient's scale history (a variable its gradient op writes) is training state
    too: it is an entry of the checkpoint, and on the emulated Cortex-M7 training resumed after a reboot reaches, byte for
    byte, the state uninterrupted training reached."""
    require(device.check_tools)
    require(device.locate_sources)
    sgd = tt.SGD(lr=0.05, momentum=0.9, rounding="stochastic", seed=1)
    options = {"gradient": "int8", "tiles": None, "flash_requantization": False, "overlap_buffers": True}
    model = tt.compile(int8_model("small_cnn"), update="all", optimizer=sgd, **options).bytes
    graph = tt.read_graph(model)
    entries = checkpoint.state_entries(graph)
    histories = ir.scale_histories(graph)  # the activation gradients' too, not only those TT_SGD reads
    assert len(set(entries)) == len(entries) and histories <= set(entries)
    # A bias summed in its update reads its layer's output gradient's scale, which may keep no history.
    summed = {p.variable for p in tt.Trainer(model).parameters if p.summed_in_update}
    assert {op.inputs[2] for op in graph.ops if op.kind == "TT_SGD" and op.inputs[0] not in summed} < histories

    firmware = device.build_firmware(model, target("cortex-m7", "reference"))
    samples = rng.uniform(-1, 1, (2 * STEPS, 12, 12, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 2 * STEPS)
    save, dump = device.SAVE_CHECKPOINT, device.DUMP_STATE
    flash = tmp_path / "flash.bin"
    flash.write_bytes(checkpoint.erased_storage(model))
    first = _run(firmware, _script(model, [*["train"] * STEPS, save, dump, *["train"] * STEPS, dump], samples, labels), flash)
    good, uninterrupted = first.states
    assert all(_split(model, good)[t] != bytes(len(_split(model, good)[t])) for t in histories)  # the histories moved
    resumed = _run(firmware, _script(model, [dump, *["train"] * STEPS, dump], samples[STEPS:], labels[STEPS:]), flash)
    assert resumed.checkpoints == [("restored", 0, 1)]
    assert resumed.states == [good, uninterrupted]

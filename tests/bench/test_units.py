"""Benchmark units: parallel worker processes, results kept on disk, resume, clear failures."""

import json

import pytest

from serl.bench.units import result_path, run_units

TINY = {"steps": 40, "warmup": 20, "dataset_steps": 100, "offline_updates": 3,
        "eval_episodes": 1}  # fmt: skip


def spec(seed: int, env: str = "Pendulum-v1") -> dict:
    return {"name": f"seed{seed}", "env": env, "real_params": "m=1.5", "seed": seed,
            "size": TINY, "device": "cpu"}  # fmt: skip


@pytest.mark.timeout(120)
def test_units_run_in_worker_processes_and_a_rerun_reads_their_results(tmp_path):
    specs = [spec(0), spec(1)]
    results = run_units("serl.bench.hybrid", specs, tmp_path, jobs=2)
    assert set(results) == {"seed0", "seed1"}
    # Each worker ran its own spec: the two seeds train and evaluate differently (a worker
    # that lost its spec's seed would give both the same numbers).
    assert set(results["seed0"]) == set(results["seed1"])
    for key in ("h2o_real_return", "sim_only_real_return", "dataset_return_per_step"):
        assert results["seed0"][key] != results["seed1"][key], key
    for s in specs:  # each worker wrote its result and its log
        assert json.loads(result_path(tmp_path, s).read_text()) == results[s["name"]]
        assert result_path(tmp_path, s).with_suffix(".log").exists()

    # A rerun with the same directory reads the results back instead of training again: a
    # marked result comes back as written.
    marked = {**results["seed0"], "h2o_real_return": 123.0}
    result_path(tmp_path, specs[0]).write_text(json.dumps(marked))
    again = run_units("serl.bench.hybrid", specs, tmp_path, jobs=2)
    assert again["seed0"]["h2o_real_return"] == 123.0
    assert again["seed1"] == results["seed1"]


@pytest.mark.timeout(180)  # two tiny runs; a busy 2-core machine took 40 s for one
def test_in_process_units_give_the_same_results_as_run_seed(tmp_path):
    from serl.bench.hybrid import parse_params, run_seed

    results = run_units("serl.bench.hybrid", [spec(0)], tmp_path, jobs=1)
    direct = run_seed("Pendulum-v1", parse_params("m=1.5"), 0, TINY, "cpu")
    assert results["seed0"] == pytest.approx(direct)


@pytest.mark.timeout(60)
def test_a_failing_worker_names_its_unit_and_shows_the_end_of_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"unit seed0 exited with 1(.|\n)*NoSuchEnv"):
        run_units("serl.bench.hybrid", [spec(0, env="NoSuchEnv-v0")], tmp_path, jobs=2)
    assert not result_path(tmp_path, spec(0)).exists()  # no result: a rerun retries it

"""The experiments benchmark's results-view part on its made-up store (quick), so it keeps
working; the launch timings need real worker starts and run only as the benchmark."""

from lab.bench import experiments as bench


def test_results_view_benchmark_measures_the_whole_grid(tmp_path):
    exp_id = bench.fill_finished(str(tmp_path))
    walls, cpus, sizes = bench.time_view(str(tmp_path), exp_id, repeats=1)
    assert len(walls) == len(cpus) == 1 and walls[0] > 0
    # 4 families x 5 fractions; comparisons: 6 family pairs x 5 fractions + 10 fraction pairs x 4
    assert sizes == {**sizes, "groups": 20, "comparisons": 6 * 5 + 10 * 4, "runs": 200}
    assert sizes["figure_json_bytes"] > 0
    assert bench._stats([3.0, 1.0, 2.0]) == {"n": 3, "median": 2.0, "p90": 3.0, "max": 3.0}

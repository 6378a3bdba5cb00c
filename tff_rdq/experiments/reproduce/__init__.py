"""The reproduction sweep and its claims report.

A reproduce config is an experiment config (the base: `[data]`, `[model]`,
`[training]`, `[aggregator]`, `[output]`, `name`, and `base`, see
`tff_rdq.experiments.config`) plus `[[setting]]` tables:

  [[setting]]
  name = "local_fedadam"       # a plain directory name
  corpus = "local"             # labels for the report (Claim 1's factors);
  optimizer = "fedadam"        # `set` selects the data and the optimizer
  set = {"training.server_optimizer" = "adam"}   # dotted overrides of the base
  save_updates = {rounds = [2, 30, 60], clients = 3}  # optional, see below
  seeds = [0, 1, 2]            # optional: each arm once per training.seed
  [[setting.sweep]]            # as in `tff_rdq.experiments.compare`
  method = "mean"

`save_updates` is applied to one run of the setting: the one labelled
`save_updates.run`, by default the first `rdq` run. Its frontier is measured at
the grid steps `save_updates.steps` (default `frontier.DEFAULT_STEPS`).

A sweep entry's setting is an *arm*; with `seeds`, each arm runs once per
seed, labelled `ARM_seed=S`, and arms are compared paired by seed. Top-level
`docs_dir` names where the sweep writes (default `docs/reproduction`), and an
`[analysis]` table fixes the verdicts' rules before any run (`settings`).

`sweep(path)` runs every run of every setting (`run`, resumable; round-robin over
the settings, each arm's seeds in a row, `run_order`; `only=` names the settings to run) under
`output.root_dir/NAME/SETTING/LABEL`, skipping those already finished: a run is
finished when `DOCS/runs/SETTING/LABEL/` holds its `summary.json` of the last
round and a `config.json` equal to the run's config. After each finished run
it copies `summary.json`, `metrics.csv`, `config.json` and `wall_seconds.json`
(the wall time spent in the run, summed over resumes) there, and after the run
that saved updates, the frontier of those updates (`measure_frontier`) to
`DOCS/frontier/SETTING.csv` (`DOCS` is the config's `docs_dir`); so a
sweep interrupted at any point loses nothing once `DOCS` is committed.

`report(...)` (also `tff-rdq reproduce CONFIG --report-only`) writes
`DOCS.md` (e.g. `docs/reproduction.md`), CSVs and PNGs in `DOCS` from those
copies alone; runs not finished yet are listed as missing. With `[analysis]`
it is the paired report (`paired_report`: per setting, every arm against
uncompressed, ours against each baseline at equal bits, the breaking bitrate
and the 1-bit equivalence test, each verdict with its rule); without, the
first sweep's. It also writes `DOCS/summary.md`, the short form, which
`update_readme` (`--readme docs/results.md`) puts between the results page's
`README_BEGIN` and `README_END` markers, its links made relative to that
page, so that the page's numbers are the report's, never typed in.

Modules: `settings` (the config: `Run`, `load`), `runner` (`run_order`,
`sweep`), `results` (the files in `DOCS`: copied runs, frontier CSVs and their
measurement), `analysis` (the first sweep's claims and verdicts), `claim1`
(Claim 1 analysed), `paired` (verdicts on arms of paired seeds),
`paired_report` and `reporting` (the report, its summary and
`update_readme`), `markdown` (tables and links).
"""

# pylint: disable=unused-import
from tff_rdq.experiments.reproduce.analysis import (
    CLAIM2_P, CV_PARTLY, CV_SUPPORTED, ONE_BIT_RANGE, TARGET_DISTORTIONS, _outcome, bits_at)
from tff_rdq.experiments.reproduce.reporting import (
    README_BEGIN, README_END, readme_summary, report, update_readme)
from tff_rdq.experiments.reproduce.results import (
    FRONTIER_FIELDS, NORMALIZATIONS, finished_summary, measure, measure_frontier, read_frontier,
    write_frontier)
from tff_rdq.experiments.reproduce.runner import run_order, sweep
from tff_rdq.experiments.reproduce.settings import (
    DEFAULT_DOCS_DIR, SAVE_UPDATES_KEYS, SEED_SUFFIX, SETTING_KEYS, SWEEP_KEYS, Run, Sweep, load)

"""The claims report (`report`), its short form for the README and `update_readme`.

With the sweep config's `[analysis]` table the report is the paired one
(`paired_report`): verdicts on arms of paired seeds by the pre-registered
rules. Without it (the first sweep) it is the first sweep's report, which
gives no such verdicts and says so.
"""

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable=wrong-import-position
from tff_rdq.experiments import claims
from tff_rdq.experiments import compare
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import verdicts as verdicts_lib
from tff_rdq.experiments.reproduce import claim1 as claim1_lib
from tff_rdq.experiments.reproduce import paired_report
from tff_rdq.experiments.reproduce.analysis import (
    ONE_BIT_RANGE, TARGET_DISTORTIONS, _best_normalization, _claim1, _claim2, _one_bit,
    _outcome, _verdicts)
from tff_rdq.experiments.reproduce.markdown import fmt as _fmt
from tff_rdq.experiments.reproduce.markdown import link, rebase_links
from tff_rdq.experiments.reproduce.markdown import table as _table
from tff_rdq.experiments.reproduce.results import (
    NORMALIZATIONS, _frontier_path, _frontier_seconds_path, _normalization_name, _read_json,
    _run_docs, _write_csv, finished_summary, read_frontier)
from tff_rdq.experiments.reproduce.settings import DEFAULT_DOCS_DIR, Run
# pylint: enable=wrong-import-position

# The README lines between these markers are `DOCS/summary.md` (`update_readme`).
# The begin marker is found by its start, `_README_BEGIN_START` (older ones named
# the summary's path), and rewritten.
README_BEGIN = ('<!-- reproduction summary: written by `tff-rdq reproduce CONFIG --report-only '
                '--readme PATH` from the sweep\'s DOCS/summary.md, its links made relative to '
                'this file; do not edit -->')
README_END = '<!-- end of reproduction summary -->'
_README_BEGIN_START = '<!-- reproduction summary:'
# In the report of a sweep whose config has no `[analysis]` table (the first sweep).
NO_ANALYSIS_NOTE = (
    'This sweep\'s config has no `[analysis]` table, so this report gives no verdicts on '
    'arms of paired seeds by pre-registered rules (`tff_rdq.experiments.verdicts`); the '
    'verdicts below are the first sweep\'s, on single runs.\n\n')


def _accuracy_section(setting, finished, docs_dir) -> tuple[str, list[dict], list[dict]]:
  """Table, plot and bits-to-match of one setting; returns markdown and CSV rows."""
  rows = [dict(s, setting=setting, label=r.label, method=r.kind) for r, s in finished]
  points = {key: [(r['mean_bits_per_parameter'], r[key]) for r in rows]
            for key in ('eval_loss', 'eval_accuracy', 'eval_accuracy_without_oov_or_eos')}
  for key, higher in (('eval_loss', False), ('eval_accuracy', True),
                      ('eval_accuracy_without_oov_or_eos', True)):
    for row, on in zip(rows, compare.pareto_front(points[key], higher)):
      row[f'front_{key}'] = on
  ours = [(s['mean_bits_per_parameter'], s['eval_loss']) for r, s in finished if r.rdq_uniform]
  seeds = [s['eval_loss'] for r, s in finished if not r.compressed]
  spread = max(seeds) - min(seeds) if len(seeds) >= 2 else 0.0
  matches = []
  for r, s in finished:
    if r.config.aggregator.method in ('rdq', 'mean'):
      continue
    bits, status = claims.bits_to_match(ours, s['eval_loss'])
    baseline_bits = s['mean_bits_per_parameter']
    matches.append(dict(setting=setting, baseline=r.label, baseline_bits=baseline_bits,
                        eval_loss=s['eval_loss'], ours_bits=bits, status=status,
                        ours_fewer_bits=status != 'not_reached' and bits <= baseline_bits,
                        seed_spread=spread,
                        outcome=_outcome(ours, s['eval_loss'], baseline_bits, spread)))
  fig, axes = plt.subplots(1, 3, figsize=(18, 5))
  for ax, (key, label, higher) in zip(axes, (
      ('eval_accuracy', 'final test accuracy', True),
      ('eval_accuracy_without_oov_or_eos', 'final test accuracy w/o OOV, EOS', True),
      ('eval_loss', 'final test loss', False))):
    compare.plot_on(ax, rows, key, label, higher_is_better=higher, log_y=False)
  fig.suptitle(setting)
  fig.tight_layout()
  png = f'{setting}_accuracy_vs_bits.png'
  fig.savefig(docs_dir / png, dpi=90)
  plt.close(fig)
  def cell(row, key):
    return f'{row[key]:.4f}' + (' *' if row[f'front_{key}'] else '')

  text = _table(
      ('run', 'bits/param', 'eval loss', 'accuracy', 'acc. w/o OOV, EOS', 'rel. distortion'),
      [(r['label'], r['mean_bits_per_parameter'], cell(r, 'eval_loss'),
        cell(r, 'eval_accuracy'), cell(r, 'eval_accuracy_without_oov_or_eos'),
        r['mean_relative_distortion'])
       for r in sorted(rows, key=lambda r: r['mean_bits_per_parameter'])])
  text += (f'\n`*`: on the Pareto front of that column against bits.\n\n'
           f'![{setting}]({docs_dir.name}/{png})\n')
  if matches:
    text += '\nBits ours (rdq, uniform rounding) needs to reach each baseline\'s eval loss:\n\n'
    text += _table(('baseline', 'its bits/param', 'its eval loss', 'ours bits/param', 'status',
                    'seed spread', 'outcome'),
                   [(m['baseline'], m['baseline_bits'], m['eval_loss'],
                     m['ours_bits'], m['status'].replace('_', ' '), m['seed_spread'],
                     m['outcome']) for m in matches])
    text += ('\n*Seed spread*: max - min eval loss of the uncompressed seeds (0 with one '
             'seed); *outcome*: ours better if it reaches the baseline\'s eval loss minus the '
             'spread with no more bits, the baseline better if ours cannot reach its eval loss '
             'plus the spread with no more bits, else within the seed spread.\n')
  return text, rows, matches


def _plot_frontier(frontier_rows, path) -> None:
  pairs = sorted({(r['corpus'], r['optimizer']) for r in frontier_rows})
  colours = {p: plt.cm.tab10(i % 10) for i, p in enumerate(pairs)}
  fig, axes = plt.subplots(1, len(NORMALIZATIONS), figsize=(7 * len(NORMALIZATIONS), 5))
  for ax, key in zip(axes, NORMALIZATIONS):
    curves = {}
    for r in frontier_rows:
      curves.setdefault((r['setting'], r['round'], r['client']), []).append(r)
    labelled = set()
    for rows in curves.values():
      pair = (rows[0]['corpus'], rows[0]['optimizer'])
      points = sorted((r[key], r['bits_per_parameter']) for r in rows)
      ax.plot([p[0] for p in points], [p[1] for p in points], '-', color=colours[pair],
              alpha=0.6, label=None if pair in labelled else '/'.join(pair))
      labelled.add(pair)
    for target in TARGET_DISTORTIONS:
      ax.axvline(target, color='grey', linestyle=':', linewidth=1)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel(f'relative distortion, {_normalization_name(key)}')
    ax.set_ylabel('bits per parameter')
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
def _gather(runs: list[Run], settings: list[str], docs_dir: pathlib.Path):
  """What `DOCS` holds for `runs`: the finished `(run, summary)` pairs by
  setting, the missing runs, the frontier rows, the updates-saving runs without
  a frontier, and the wall seconds of it all."""
  finished = {s: [] for s in settings}
  missing = []
  wall = 0.0
  for run in runs:
    summary = finished_summary(docs_dir, run)
    if summary is None:
      missing.append(run)
      continue
    finished[run.setting].append((run, summary))
    wall += (_read_json(_run_docs(docs_dir, run) / 'wall_seconds.json') or {}).get('seconds', 0.0)
  frontier_rows, frontier_missing = [], []
  for run in (r for r in runs if r.saves_updates):
    path = _frontier_path(docs_dir, run.setting)
    if path.is_file():
      frontier_rows += read_frontier(path)
      seconds_path = _frontier_seconds_path(docs_dir, run.setting)
      wall += (_read_json(seconds_path) or {}).get('seconds', 0.0)
    else:
      frontier_missing.append(run)
  return finished, missing, frontier_rows, frontier_missing, wall


def _header_section(docs_dir, finished_line, wall, missing, frontier_missing) -> str:
  out = ['# Reproduction: the paper\'s claims on these runs\n\n',
         'Generated by `tff-rdq reproduce CONFIG` (or `--report-only`) from the summaries in '
         f'`{docs_dir.name}/runs/` and the frontiers of saved updates in '
         f'`{docs_dir.name}/frontier/` (beside this file); '
         'every number below is computed from them.\n\n',
         f'{finished_line}. Sweep wall time so far: '
         f'{wall / 60:.1f} min (the runs\' measured wall times, summed over sessions, plus the '
         'frontier measurements; runs that shared the machine each count their own time, '
         'so it can exceed the elapsed time).\n\n']
  if missing or frontier_missing:
    out.append('Missing (not run yet, unfinished, or run with a different config):\n\n')
    out += [f'- run `{r.setting}/{r.label}`\n' for r in missing]
    out += [f'- frontier of the saved updates of `{r.setting}/{r.label}`\n'
            for r in frontier_missing]
    out.append('\n')
  return ''.join(out)


def _accuracy_sections(settings, finished, docs_dir) -> tuple[str, list[dict], list[dict]]:
  """Every setting's `_accuracy_section`; writes `runs.csv` and `bits_to_match.csv`."""
  out = ['## Accuracy against bits\n\n']
  all_rows, all_matches = [], []
  for setting in settings:
    out.append(f'### {setting}\n\n')
    if not finished[setting]:
      out.append('No finished runs yet.\n\n')
      continue
    text, rows, matches = _accuracy_section(setting, finished[setting], docs_dir)
    out += [text, '\n']
    all_rows += rows
    all_matches += matches
  run_fields = ['setting', 'label', 'method', 'rounds', 'mean_bits_per_parameter', 'eval_loss',
                'eval_accuracy', 'eval_accuracy_without_oov_or_eos', 'mean_relative_distortion',
                'mean_distortion', 'total_uplink_bytes', 'median_round_seconds',
                'front_eval_loss', 'front_eval_accuracy', 'front_eval_accuracy_without_oov_or_eos']
  _write_csv(docs_dir / 'runs.csv', run_fields, all_rows)
  _write_csv(docs_dir / 'bits_to_match.csv', ('setting', 'baseline', 'baseline_bits', 'eval_loss',
                                               'ours_bits', 'status', 'ours_fewer_bits',
                                               'seed_spread', 'outcome'),
             all_matches)
  return ''.join(out), all_rows, all_matches


def _claim2_section(settings, finished, docs_dir) -> tuple[str, list[dict]]:
  """Claim 2's table; writes `claim2.csv`."""
  out = ['## Claim 2: distortion predicts model performance\n\n'
         'Spearman rank correlation between a run\'s mean relative distortion and its final '
         'eval loss, over the compressed runs of each setting with at least 3 (bootstrap 95 % '
         'interval, 2000 resamples of runs; p: one-sided permutation p-value of a positive '
         'correlation, exact up to 8 runs).\n\n']
  claim2 = [c for c in (_claim2(s, finished[s]) for s in settings) if c]
  if claim2:
    out.append(_table(('setting', 'runs', 'Spearman (all)', '95 % interval', 'p',
                       'ours: runs', 'Spearman (ours)', '95 % interval', 'p (ours)'),
                      [(c['setting'], c['all_n'], c['all_spearman'],
                        f"[{_fmt(c['all_low'], 3)}, {_fmt(c['all_high'], 3)}]",
                        _fmt(c['all_p'], 3), c['ours_n'], c['ours_spearman'],
                        f"[{_fmt(c['ours_low'], 3)}, {_fmt(c['ours_high'], 3)}]",
                        _fmt(c['ours_p'], 3))
                       for c in claim2]) + '\n')
  else:
    out.append('No setting has 3 finished compressed runs yet.\n\n')
  _write_csv(docs_dir / 'claim2.csv', ('setting', 'runs', 'all_n', 'all_spearman', 'all_low',
                                       'all_high', 'all_p', 'ours_n', 'ours_spearman',
                                       'ours_low', 'ours_high', 'ours_p'), claim2)
  return ''.join(out), claim2


def _claim1_section(frontier_rows, docs_dir, tolerance=None) -> tuple[str, list[dict]]:
  """Claim 1's tables and plot (`frontier_curves.png`); writes `claim1.csv` and the
  `claim1_KEY.csv` of `claim1.analyse` (KEY: shares, regressions, fixed_step,
  updates), `tolerance` being the `[analysis]` table's `claim1_tolerance`
  (None: `claim1.DEFAULT_TOLERANCE`)."""
  out = ['## Claim 1: the rate-distortion frontier is consistent\n\n']
  claim1 = _claim1(frontier_rows) if frontier_rows else []
  analysis = claim1_lib.analyse(frontier_rows, NORMALIZATIONS, TARGET_DISTORTIONS, tolerance)
  if claim1:
    _plot_frontier(frontier_rows, docs_dir / 'frontier_curves.png')
    n_updates = len({(r['setting'], r['round'], r['client']) for r in frontier_rows})
    pairs = sorted({(r['corpus'], r['optimizer']) for r in frontier_rows})
    out.append(
        f'{n_updates} saved updates of {len(pairs)} (corpus, optimizer) pairs '
        f'({", ".join("/".join(p) for p in pairs)}), compressed by ours (the aggregator\'s '
        'own compressor) over the frontier\'s step grid. Bits per parameter at each target '
        'relative distortion are interpolated in log-log per update (updates whose grid does '
        'not reach the target are left out). CV: coefficient of variation of those bits across '
        'updates; shares: the part of the variance of log2 bits explained by corpus, '
        'optimizer, round (early/middle/late position) and the real client, entered in that '
        'order (sequential sums of squares: the client share is the variation between '
        'clients within a corpus and round), and what is left (residual); the largest CV '
        'within a corpus: across the other factors, the corpus held fixed.\n\n'
        f'![frontier curves]({docs_dir.name}/frontier_curves.png)\n\n')
    out.append(_table(('normalization', 'target', 'updates', 'outside grid', 'mean bits', 'CV',
                       'corpus', 'optimizer', 'round', 'client', 'residual',
                       'mean bits by corpus', 'largest CV within a corpus'),
                      [(_normalization_name(c['normalization']), c['target'],
                        c['updates'], c['outside_grid'], c['mean_bits'], c['cv'],
                        c['share_corpus'], c['share_optimizer'], c['share_round'],
                        c['share_client'], c['share_residual'], c['mean_bits_by_corpus'],
                        c['cv_within_corpus'])
                       for c in claim1]) + '\n')
    best = _best_normalization(claim1)
    if best:
      out.append(f'Most consistent normalization (lowest mean CV over the targets that every '
                 f'normalization reaches, {", ".join(str(t) for t in best[1])}): '
                 f'**{NORMALIZATIONS[best[0]]}** (mean CV {best[2]:.3f}).\n\n')
    else:
      out.append('No target distortion is reached by the updates under every normalization.\n\n')
    out.append('### What the bits depend on, and a fixed step\n\n'
               + claim1_lib.describe(analysis) + '\n')
    names = {k: _normalization_name(k) for k in NORMALIZATIONS}
    for title, header, rows in claim1_lib.markdown_tables(analysis, names):
      out.append(f'{title}:\n\n' + _table(header, rows) + '\n')
  else:
    out.append('No frontier of saved updates yet.\n\n')
  _write_csv(docs_dir / 'claim1.csv', ('normalization', 'target', 'updates', 'outside_grid',
                                       'mean_bits', 'cv', 'share_corpus', 'share_optimizer',
                                       'share_round', 'share_client', 'share_residual',
                                       'mean_bits_by_corpus', 'cv_within_corpus'), claim1)
  for key, fields in claim1_lib.CSV_FIELDS.items():
    _write_csv(docs_dir / f'claim1_{key}.csv', fields, analysis[key])
  return ''.join(out), claim1


def _one_bit_section(settings, finished, docs_dir) -> tuple[str, list[dict]]:
  """Uncompressed against ours near 1 bit/parameter; writes `one_bit.csv`."""
  out = ['## Uncompressed against ours at about 1 bit per parameter\n\n'
         'Relative gap = (mean of the uncompressed runs - ours) / that mean; seed spread = '
         '(max - min) / mean over the uncompressed runs\' seeds. Ours: the rdq run (uniform '
         f'rounding) nearest 1 bit/parameter within {ONE_BIT_RANGE[0]}-{ONE_BIT_RANGE[1]}.\n\n']
  one_bit = [c for c in (_one_bit(s, finished[s]) for s in settings) if c]
  if one_bit:
    out.append(_table(('setting', 'seeds', 'ours', 'bits/param', 'acc. w/o OOV, EOS: mean',
                       'ours', 'gap', 'spread', 'accuracy: gap', 'spread'),
                      [(c['setting'], c['seeds'], c['ours'], c['ours_bits'], c['acc_wo_mean'],
                        c['acc_wo_ours'], c['acc_wo_gap'], c['acc_wo_spread'], c['acc_gap'],
                        c['acc_spread']) for c in one_bit]) + '\n')
  else:
    out.append('No setting has 2 finished uncompressed seeds and an rdq run near 1 bit yet.\n\n')
  _write_csv(docs_dir / 'one_bit.csv', ('setting', 'seeds', 'ours', 'ours_bits', 'acc_wo_mean',
                                        'acc_wo_ours', 'acc_wo_gap', 'acc_wo_spread', 'acc_mean',
                                        'acc_ours', 'acc_gap', 'acc_spread'), one_bit)
  return ''.join(out), one_bit


def report(runs: list[Run], docs_dir=DEFAULT_DOCS_DIR,
           analysis: verdicts_lib.AnalysisSettings | None = None) -> pathlib.Path:
  """Writes `DOCS.md` and `DOCS/*.csv, *.png` from the copied results; returns the md path.

  With `analysis` (the config's `[analysis]` rules) the sections are
  `_header_section` (what is finished or missing), `paired_report.sections`
  (the rules, then per setting the verdicts on arms, ours against the
  baselines at equal bits, the breaking bitrate and the 1-bit test; Claim 2
  on arms) and `_claim1_section`; `DOCS/summary.md` is
  `paired_report.summary`. Without it, the first sweep's report:
  `_header_section`, `NO_ANALYSIS_NOTE`, `_accuracy_sections`,
  `_claim2_section`, `_claim1_section`, `_one_bit_section` (each writing its
  CSVs and plots), then its verdicts on single runs; and `_summary`.
  """
  docs_dir = pathlib.Path(docs_dir)
  docs_dir.mkdir(parents=True, exist_ok=True)
  settings = list(dict.fromkeys(r.setting for r in runs))
  finished, missing, frontier_rows, frontier_missing, wall = _gather(runs, settings, docs_dir)
  finished_line = f'Runs finished: {len(runs) - len(missing)} of {len(runs)}'
  header = _header_section(docs_dir, finished_line, wall, missing, frontier_missing)
  status = f'{finished_line} ({wall / 60:.1f} min of summed run wall time). '
  path, summary_path = docs_dir.with_suffix('.md'), docs_dir / 'summary.md'
  claim1_text, claim1 = _claim1_section(
      frontier_rows, docs_dir, analysis.claim1_tolerance if analysis else None)
  if analysis is not None:
    body, analyses = paired_report.sections(settings, finished, docs_dir, analysis)
    path.write_text(header + body + claim1_text)
    summary_path.write_text(
        paired_report.summary(status, analyses, analysis, path, summary_path))
    return path
  accuracy, all_rows, all_matches = _accuracy_sections(settings, finished, docs_dir)
  claim2_text, claim2 = _claim2_section(settings, finished, docs_dir)
  one_bit_text, one_bit = _one_bit_section(settings, finished, docs_dir)
  verdicts = _verdicts(claim1, claim2, one_bit, all_matches, missing or frontier_missing)
  path.write_text(header + NO_ANALYSIS_NOTE + accuracy + claim2_text + claim1_text
                  + one_bit_text + '## Verdicts\n\n' + verdicts)
  summary_path.write_text(_summary(status, settings, all_rows, all_matches, claim2, claim1,
                                   verdicts, path, summary_path))
  return path


def _summary(status, settings, rows, matches, claim2, claim1, verdicts, report_path,
             summary_path) -> str:
  """The report's short form (`summary_path`, `DOCS/summary.md`) for the README, its
  links relative to `summary_path`."""
  outcome = {(m['setting'], m['baseline']): m for m in matches}
  order = {s: i for i, s in enumerate(settings)}

  def against_ours(row):
    m = outcome.get((row['setting'], row['label']))
    if m is None:
      return ''
    needs = ('not reached' if m['status'] == 'not_reached' else
             f"{_fmt(m['ours_bits'], 3)} bits ({m['status'].replace('_', ' ')})")
    return f"{m['outcome']}; ours needs {needs}"

  out = [status, f'Full report: [`{report_path}`]({link(report_path, summary_path)}) (tables, '
         f'plots and CSVs in `{summary_path.parent}/`).\n\n',
         'Every finished run, after its last round (eval loss and accuracy on the fixed '
         'evaluation examples; *against ours*: for a baseline, the outcome with the '
         'uncompressed seeds\' eval-loss spread as noise, and the bits ours needs to reach '
         'its eval loss):\n\n']
  out.append(_table(
      ('setting', 'run', 'bits/param', 'eval loss', 'acc. w/o OOV, EOS', 'rel. distortion',
       'against ours'),
      [(r['setting'], r['label'], _fmt(r['mean_bits_per_parameter'], 3),
        _fmt(r['eval_loss'], 4), f"{100 * r['eval_accuracy_without_oov_or_eos']:.2f} %",
        _fmt(r['mean_relative_distortion'], 3), against_ours(r))
       for r in sorted(rows, key=lambda r: (order[r['setting']],
                                           r['mean_bits_per_parameter']))]))
  if claim2:
    out.append('\nClaim 2, Spearman correlation of mean relative distortion with eval loss '
               '(permutation p, one-sided):\n\n')
    out.append(_table(('setting', 'compressed runs', 'Spearman', 'p', 'ours: runs',
                       'Spearman', 'p'),
                      [(c['setting'], c['all_n'], _fmt(c['all_spearman'], 3),
                        _fmt(c['all_p'], 3), c['ours_n'], _fmt(c['ours_spearman'], 3),
                        _fmt(c['ours_p'], 3)) for c in claim2]))
  if claim1:
    out.append('\nClaim 1, bits per parameter of the saved updates at a target relative '
               'distortion: coefficient of variation across all updates, the share of its '
               'variance the corpus explains, and the largest CV within one corpus:\n\n')
    out.append(_table(('normalization', 'target', 'updates', 'CV', 'corpus share',
                       'largest CV within a corpus'),
                      [(_normalization_name(c['normalization']), c['target'],
                        c['updates'], _fmt(c['cv'], 3), _fmt(c['share_corpus'], 3),
                        _fmt(c['cv_within_corpus'], 3)) for c in claim1]))
  out += ['\nVerdicts:\n\n', verdicts]
  return ''.join(out)


def readme_summary(text: str) -> tuple[int, int] | None:
  """`(begin, end)` of the generated block in a README's `text`: the start of its
  begin marker line and the start of `README_END`; None without markers."""
  begin = text.find(_README_BEGIN_START)
  end = text.find(README_END, begin)
  if begin < 0 or end < 0 or text.find('-->', begin) > end:
    return None
  return begin, end


def update_readme(readme_path, summary_path) -> None:
  """Replaces the README's generated block (`readme_summary`) by the summary.

  The summary's relative links, written from its own folder, are made
  relative to the README's (`markdown.rebase_links`), and the begin marker is
  rewritten as `README_BEGIN`.
  """
  readme_path, summary_path = pathlib.Path(readme_path), pathlib.Path(summary_path)
  text = readme_path.read_text()
  block = readme_summary(text)
  if block is None:
    raise config_lib.ConfigError(
        f'{readme_path}: no reproduction summary markers; put the line {README_BEGIN!r} '
        f'and, after it, the line {README_END!r} where the summary goes.')
  summary = rebase_links(summary_path.read_text(), summary_path.parent, readme_path.parent)
  readme_path.write_text(text[:block[0]] + README_BEGIN + '\n\n' + summary.rstrip('\n')
                         + '\n\n' + text[block[1]:])

"""The paired report's sections (`sections`): verdicts on arms, their plots and CSVs.

For a sweep config with an `[analysis]` table. `reporting.report` writes the
header and Claim 1 around these; every number here comes from `paired`,
applied to the finished runs' copies in `DOCS/runs/`.
"""

import csv
import dataclasses
import math
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable=wrong-import-position
from tff_rdq.experiments import verdicts
from tff_rdq.experiments.reproduce import paired
from tff_rdq.experiments.reproduce.markdown import fmt, link, table
from tff_rdq.experiments.reproduce.results import _run_docs, _write_csv
# pylint: enable=wrong-import-position

RLR_BITS_KEY = 'mean_bits_per_parameter_run_length_rans'

NOTES = (
    'Bits per parameter are the bits each method sends, counted from its payloads (ours: '
    'the Elias-gamma code of its integers, counted exactly also with `transport = "count"`, '
    'which does not code them). Where ours\' runs also measured '
    'what `run_length_rans` would send for the same integers (`aggregator.compare_codecs`), '
    'the plot of differences draws ours a second time at those bits: the same runs, another '
    'lossless code. *Aggregate relative distortion*: the squared error of the aggregated update '
    'over its squared norm, what the model sees; *client relative distortion*: the mean over '
    'clients of each update\'s own. Top-K and 3LC run without error feedback: in cross-device '
    'federated learning a client rarely takes part twice, so there is no residual to carry '
    'over.\n\n')


def run_results(runs_with_summaries, docs_dir: pathlib.Path,
                settings: verdicts.AnalysisSettings) -> list[paired.RunResult]:
  """The `paired.RunResult` of each finished `(run, summary)`, from its copied files."""
  results = []
  for run, summary in runs_with_summaries:
    with (_run_docs(docs_dir, run) / 'metrics.csv').open(newline='') as f:
      rows = list(csv.DictReader(f))
    results.append(paired.RunResult(
        arm=run.arm, seed=run.seed, kind=run.kind, ours=run.rdq_uniform,
        uncompressed=not run.compressed,
        metric=verdicts.primary_metric(rows, settings.last_evals),
        bits=summary['mean_bits_per_parameter'],
        rlr_bits=summary.get(RLR_BITS_KEY, math.nan),
        aggregate_distortion=summary.get('mean_aggregate_relative_distortion', math.nan),
        client_distortion=summary['mean_relative_distortion'],
        accuracy=summary['eval_accuracy_without_oov_or_eos']))
  return results


@dataclasses.dataclass
class SettingAnalysis:
  """Everything `paired` says about one setting."""
  setting: str
  arms: list
  against: dict
  equal_bits: list
  breaking: paired.BreakingBitrate
  one_bit: paired.OneBit | None
  claim2: dict | None


def analyse(setting: str, results, settings: verdicts.AnalysisSettings) -> SettingAnalysis:
  arms = paired.group_arms(results)
  against = paired.against_uncompressed(arms, settings)
  return SettingAnalysis(setting, arms, against, paired.at_equal_bits(arms, settings),
                         paired.breaking_bitrate(arms, against, settings),
                         paired.one_bit(arms, against), paired.claim2(arms, against))


def _difference_header(settings: verdicts.AnalysisSettings) -> str:
  return f'A - B [{100 * (1 - settings.alpha):.4g} % interval]'


def _interval(verdict: verdicts.Verdict) -> str:
  if math.isnan(verdict.mean):
    return 'n/a'
  return f'{verdict.mean:+.4f} [{verdict.low:+.4f}, {verdict.high:+.4f}]'


def _arm_rows(a: SettingAnalysis) -> list[dict]:
  """`arms.csv` rows of one setting: each arm's means and its verdict."""
  rows = []
  for arm in a.arms:
    verdict = a.against.get(arm.name)
    row = dict(setting=a.setting, arm=arm.name, method=arm.kind, ours=arm.ours,
               seeds=' '.join(str(s) for s in arm.seeds), bits=arm.mean('bits'),
               rlr_bits=arm.mean('rlr_bits'), aggregate_distortion=arm.mean('aggregate_distortion'),
               client_distortion=arm.mean('client_distortion'), metric=arm.mean('metric'),
               accuracy=arm.mean('accuracy'))
    if verdict is not None:
      row.update(difference=verdict.mean, low=verdict.low, high=verdict.high,
                 tost_low=verdict.tost_low, tost_high=verdict.tost_high, label=verdict.label,
                 rule=verdict.rule)
    rows.append(row)
  return rows


def _equal_bits_rows(a: SettingAnalysis) -> list[dict]:
  return [dict(setting=a.setting, baseline=e.baseline, method=e.kind, bits=e.bits,
               seeds=e.verdict.n, outside=' '.join(str(s) for s in e.outside),
               brackets='; '.join(f'{low} to {high}' for low, high in e.brackets),
               difference=e.verdict.mean, low=e.verdict.low, high=e.verdict.high,
               label=e.verdict.label, rule=e.verdict.rule) for e in a.equal_bits]


def _rules(pairs) -> str:
  """The rule next to each verdict: `- name: rule` lines."""
  return ''.join(f'- `{name}`: {verdict.rule}\n' for name, verdict in pairs) + '\n'


def _setting_text(a: SettingAnalysis, settings: verdicts.AnalysisSettings,
                  pngs: list[str], docs_dir: pathlib.Path) -> str:
  """One setting's markdown: verdicts, ours against baselines, breaking bitrate, 1 bit."""
  out = [f'## {a.setting}\n\n']
  if paired.reference(a.arms) is None:
    out.append('No single uncompressed arm has finished runs yet: no verdicts.\n\n')
  out.append('Every arm against uncompressed (A = the arm, B = uncompressed; `better`: a lower '
             'eval loss), by the rules above:\n\n')
  def difference(arm):
    if arm.name in a.against:
      return _interval(a.against[arm.name]), f'**{a.against[arm.name].label}**'
    return ('reference' if arm.uncompressed else 'n/a'), ''

  out.append(table(
      ('arm', 'method', 'seeds', 'bits/param', 'rlr bits/param', 'aggregate rel. distortion',
       'client rel. distortion', 'acc. w/o OOV, EOS', 'primary metric',
       _difference_header(settings), 'verdict'),
      [(r['arm'], r['method'], r['seeds'], r['bits'], r['rlr_bits'], r['aggregate_distortion'],
        r['client_distortion'], r['accuracy'], r['metric'], *difference(arm))
       for arm, r in zip(a.arms, _arm_rows(a))]) + '\n')
  out.append(_rules(a.against.items()))
  out += [f'![{a.setting}: {png}]({docs_dir.name}/{png})\n\n' for png in pngs]
  out.append('Ours against each baseline at the baseline\'s bits (A = ours, interpolated '
             'per seed in log2 bits between its two runs that bracket the baseline\'s run; '
             'B = the baseline; `better`: ours has the lower loss):\n\n')
  if a.equal_bits:
    out.append(table(
        ('baseline', 'method', 'bits/param', 'seeds', 'ours between',
         _difference_header(settings), 'verdict'),
        [(r['baseline'], r['method'], r['bits'], r['seeds'], r['brackets'] or 'n/a',
          _interval(e.verdict), f"**{r['label']}**")
         for r, e in zip(_equal_bits_rows(a), a.equal_bits)]) + '\n')
    out.append(_rules((e.baseline, e.verdict) for e in a.equal_bits))
  else:
    out.append('No finished baseline arm.\n\n')
  out.append(f'**Breaking bitrate** of ours: {a.breaking.text}\n\n')
  out.append(_one_bit_text(a.one_bit, settings) + '\n\n')
  return ''.join(out)


def _one_bit_text(one: paired.OneBit | None, settings: verdicts.AnalysisSettings) -> str:
  if one is None:
    return '**Ours at about 1 bit/parameter costs no accuracy**: no arm of ours yet.'
  v = one.verdict
  return (f'**Ours at about 1 bit/parameter costs no accuracy**: {one.outcome}. Ours nearest '
          f'1 bit/parameter is `{one.arm}` at {one.bits:.3g} bits/parameter (tested only within '
          f'{paired.ONE_BIT_RANGE[0]}-{paired.ONE_BIT_RANGE[1]}); its '
          f'{100 * (1 - 2 * settings.alpha):.4g} % interval against uncompressed is '
          f'[{fmt(v.tost_low)}, {fmt(v.tost_high)}], the equivalence margin '
          f'+-{settings.equivalence_margin:g}. {v.rule}')


def _plot_differences(a: SettingAnalysis, settings: verdicts.AnalysisSettings, path) -> None:
  """Paired eval-loss difference to uncompressed, with its interval, against bits.

  One curve per method; ours a second time at its `run_length_rans` bits
  when its runs measured them.
  """
  fig, ax = plt.subplots(figsize=(9, 5.5))
  curves = {}
  for arm in a.arms:
    verdict = a.against.get(arm.name)
    if verdict is None or math.isnan(verdict.mean):
      continue
    curves.setdefault(arm.kind, []).append((arm.mean('bits'), verdict))
    if arm.ours and math.isfinite(arm.mean('rlr_bits')):
      curves.setdefault(f'{arm.kind} (run_length_rans bits)', []).append(
          (arm.mean('rlr_bits'), verdict))
  for name, points in sorted(curves.items()):
    points.sort(key=lambda p: p[0])
    ax.errorbar([b for b, _ in points], [v.mean for _, v in points],
                yerr=[[v.mean - v.low for _, v in points], [v.high - v.mean for _, v in points]],
                marker='o', markersize=4, capsize=3, label=name,
                linestyle='--' if 'run_length_rans' in name else '-')
  ax.axhline(0, color='k', linewidth=1)
  margin = settings.equivalence_margin
  ax.axhspan(-margin, margin, color='grey', alpha=0.15,
             label=f'equivalence margin +-{margin:g}')
  ax.set_xscale('log')
  ax.set_xlabel('mean bits per parameter (log)')
  ax.set_ylabel('eval loss minus uncompressed, paired by seed\n'
                f'({100 * (1 - settings.alpha):.4g} % interval)')
  ax.set_title(f'{a.setting}: cost of compression against bits')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _plot_distortions(a: SettingAnalysis, path) -> None:
  """The primary metric against aggregate and per-client distortion, every method."""
  fig, axes = plt.subplots(1, 2, figsize=(14, 5))
  reference = paired.reference(a.arms)
  for ax, field, label in zip(axes, ('aggregate_distortion', 'client_distortion'), (
      'mean aggregate relative distortion (log)', 'mean per-client relative distortion (log)')):
    by_kind = {}
    for arm in a.arms:
      if not arm.uncompressed and arm.mean(field) > 0:
        by_kind.setdefault(arm.kind, []).append((arm.mean(field), arm.mean('metric')))
    for kind, points in sorted(by_kind.items()):
      ax.plot([x for x, _ in points], [y for _, y in points], 'o', label=kind, markersize=5)
    if reference is not None:
      ax.axhline(reference.mean('metric'), color='k', linewidth=1, label='uncompressed')
    ax.set_xscale('log')
    ax.set_xlabel(label)
    ax.set_ylabel('primary metric (eval loss), mean over seeds')
    ax.legend(fontsize=7)
  fig.suptitle(a.setting)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _claim2_text(analyses: list[SettingAnalysis]) -> str:
  out = ['## Claim 2 on arms: does distortion rank the cost of compression?\n\n'
         'Per setting, over the compressed arms: Spearman\'s correlation of an arm\'s paired '
         'eval-loss difference to uncompressed with its mean aggregate relative distortion '
         'and with its mean per-client relative distortion (bootstrap 95 % interval over '
         'arms; p: one-sided permutation p-value of a positive correlation).\n\n']
  rows = [a for a in analyses if a.claim2]
  if not rows:
    return out[0] + 'No setting has 3 compressed arms with a paired difference yet.\n\n'
  out.append(table(
      ('setting', 'arms', 'aggregate: Spearman', '95 % interval', 'p', 'arms',
       'per-client: Spearman', '95 % interval', 'p'),
      [(a.setting, c['aggregate_arms'], c['aggregate_spearman'],
        f"[{fmt(c['aggregate_low'], 3)}, {fmt(c['aggregate_high'], 3)}]",
        fmt(c['aggregate_p'], 3), c['client_arms'], c['client_spearman'],
        f"[{fmt(c['client_low'], 3)}, {fmt(c['client_high'], 3)}]", fmt(c['client_p'], 3))
       for a, c in ((a, a.claim2) for a in rows)]) + '\n')
  return ''.join(out)


def _write_csvs(analyses: list[SettingAnalysis], results: dict, docs_dir: pathlib.Path) -> None:
  """`runs.csv`, `arms.csv`, `equal_bits.csv`, `breaking_bitrate.csv`, `one_bit.csv`,
  `claim2.csv` in `docs_dir`."""
  _write_csv(docs_dir / 'runs.csv', ('setting', *(f.name for f in dataclasses.fields(
      paired.RunResult))), [dict(dataclasses.asdict(r), setting=s)
                            for s, rs in results.items() for r in rs])
  _write_csv(docs_dir / 'arms.csv', (
      'setting', 'arm', 'method', 'ours', 'seeds', 'bits', 'rlr_bits', 'aggregate_distortion',
      'client_distortion', 'accuracy', 'metric', 'difference', 'low', 'high', 'tost_low',
      'tost_high', 'label', 'rule'), [row for a in analyses for row in _arm_rows(a)])
  _write_csv(docs_dir / 'equal_bits.csv', (
      'setting', 'baseline', 'method', 'bits', 'seeds', 'outside', 'brackets', 'difference',
      'low', 'high', 'label', 'rule'), [row for a in analyses for row in _equal_bits_rows(a)])
  _write_csv(docs_dir / 'breaking_bitrate.csv', (
      'setting', 'status', 'above_arm', 'above_bits', 'below_arm', 'below_bits', 'text'),
      [dict(setting=a.setting, status=a.breaking.status, text=a.breaking.text,
            **dict(zip(('above_arm', 'above_bits'), a.breaking.above or ())),
            **dict(zip(('below_arm', 'below_bits'), a.breaking.below or ())))
       for a in analyses])
  _write_csv(docs_dir / 'one_bit.csv', (
      'setting', 'arm', 'bits', 'difference', 'tost_low', 'tost_high', 'label', 'outcome',
      'rule'), [dict(setting=a.setting, arm=o.arm, bits=o.bits, difference=o.verdict.mean,
                     tost_low=o.verdict.tost_low, tost_high=o.verdict.tost_high,
                     label=o.verdict.label, outcome=o.outcome, rule=o.verdict.rule)
                for a in analyses for o in [a.one_bit] if o is not None])
  _write_csv(docs_dir / 'claim2.csv', (
      'setting', *(f'{k}_{v}' for k in ('aggregate', 'client')
                   for v in ('arms', 'spearman', 'low', 'high', 'p'))),
      [dict(a.claim2, setting=a.setting) for a in analyses if a.claim2])


def sections(settings_names: list[str], finished: dict, docs_dir: pathlib.Path,
             settings: verdicts.AnalysisSettings) -> tuple[str, list[SettingAnalysis]]:
  """The paired report's body: rules, notes, each setting's section, Claim 2.

  Writes each setting's plots and the CSVs (`_write_csvs`) in `docs_dir`.
  Returns the markdown and the analyses (for the summary).
  """
  out = [verdicts.rules_text(settings) + '\n\n', NOTES]
  analyses, results = [], {}
  for setting in settings_names:
    results[setting] = run_results(finished[setting], docs_dir, settings)
    if not results[setting]:
      out.append(f'## {setting}\n\nNo finished runs yet.\n\n')
      continue
    a = analyse(setting, results[setting], settings)
    pngs = []
    if a.against:  # Something to plot: compressed arms beside the uncompressed one.
      pngs = [f'{setting}_difference_vs_bits.png', f'{setting}_loss_vs_distortion.png']
      _plot_differences(a, settings, docs_dir / pngs[0])
      _plot_distortions(a, docs_dir / pngs[1])
    out.append(_setting_text(a, settings, pngs, docs_dir))
    analyses.append(a)
  out.append(_claim2_text(analyses))
  _write_csvs(analyses, results, docs_dir)
  return ''.join(out), analyses


def summary(status: str, analyses: list[SettingAnalysis], settings: verdicts.AnalysisSettings,
            report_path: pathlib.Path, summary_path: pathlib.Path) -> str:
  """The report's short form (`DOCS/summary.md`), its links relative to `summary_path`."""
  out = [status, f'Full report: [`{report_path.name}`]({link(report_path, summary_path)}) '
         '(tables, plots and CSVs beside it). Verdicts by the pre-registered rules: paired by '
         f'client-sampling seed, at least {settings.min_seeds} seeds per arm, primary metric the '
         f'mean eval loss over the last {settings.last_evals} evaluations, '
         f'{100 * (1 - settings.alpha):.4g} % t interval of the paired mean difference, '
         f'equivalence margin +-{settings.equivalence_margin:g} (TOST).\n\n',
         'Each arm against uncompressed (A - B: eval loss of the arm minus uncompressed):\n\n']
  out.append(table(
      ('setting', 'arm', 'bits/param', 'seeds', _difference_header(settings), 'verdict'),
      [(a.setting, arm.name, fmt(arm.mean('bits'), 3), len(arm.seeds),
        _interval(a.against[arm.name]), a.against[arm.name].label)
       for a in analyses for arm in sorted(a.arms, key=lambda arm: -arm.mean('bits'))
       if arm.name in a.against]))
  equal = [(a.setting, e) for a in analyses for e in a.equal_bits]
  if equal:
    out.append('\nOurs against each baseline at the baseline\'s bits (A - B: ours minus the '
               'baseline):\n\n')
    out.append(table(('setting', 'baseline', 'bits/param', _difference_header(settings),
                      'verdict'),
                     [(s, e.baseline, fmt(e.bits, 3), _interval(e.verdict), e.verdict.label)
                      for s, e in equal]))
  out.append('\n')
  for a in analyses:
    one = (f'{a.one_bit.outcome} (`{a.one_bit.arm}`, {a.one_bit.bits:.3g} bits/parameter, '
           f'{a.one_bit.verdict.label})' if a.one_bit else 'no arm of ours yet')
    out.append(f'- **{a.setting}**: breaking bitrate {a.breaking.text} About 1 bit/parameter '
               f'costs no accuracy: {one}.\n')
  for a in analyses:
    if a.claim2:
      c = a.claim2
      out.append(f'- **{a.setting}, Claim 2 on arms**: Spearman of the eval-loss cost with '
                 f'aggregate distortion {fmt(c["aggregate_spearman"], 3)} (p '
                 f'{fmt(c["aggregate_p"], 3)}), with per-client distortion '
                 f'{fmt(c["client_spearman"], 3)} (p {fmt(c["client_p"], 3)}).\n')
  return ''.join(out)

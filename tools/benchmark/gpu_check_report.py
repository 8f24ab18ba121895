"""The summaries of ``gpu_check.py``: ``gpu_check.json`` and ``.md``.

The JSON file is the report as ``gpu_check.py`` built it; the Markdown
file has a section per part with its status and a table per result list.
"""
import json
import math
import os.path as osp


def failed_checks(parts):
    """``'part: check (value vs tol)'`` for every check that failed."""
    out = []
    for name, part in parts.items():
        for row in part['results'].get('checks', []):
            if row.get('ok') is False:
                detail = row.get('error') or (
                    f"{row.get('value', float('nan')):.3g} vs tol "
                    f"{row.get('tol', float('nan')):.3g}")
                out.append(f"{name}: {row['check']} ({detail})")
    return out



def _cell(value):
    # Four significant digits: the figures carry run-to-run noise anyway.
    if isinstance(value, float):
        return f'{value:.4g}' if math.isfinite(value) else str(value)
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return '' if value is None else str(value).replace('|', '\\|')


def markdown_table(rows):
    """Rows (dicts) as a Markdown table over the union of their keys."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ['| ' + ' | '.join(keys) + ' |',
             '|' + ' --- |' * len(keys)]
    lines += ['| ' + ' | '.join(_cell(r.get(k)) for k in keys) + ' |'
              for r in rows]
    return '\n'.join(lines)


def write_markdown(report, path):
    """One section per part: its status and one table per result list."""
    lines = [
        '# GPU check', '',
        f"- device: {report['device']}; torch {report['torch']}, CUDA "
        f"{report['cuda']}; quick: {report['quick']}",
        f"- started {report['started']}, {report['elapsed_s']:.1f} s in "
        f"total (budget {report['budget_s']:.0f} s for the parts)",
        '- failed checks: ' + ('; '.join(report['failed_checks'])
                               or 'none'), '']
    for name, part in report['parts'].items():
        lines += [f"## {name}: {part['status']} "
                  f"({part['elapsed_s']:.1f} s)", '']
        if part.get('reason'):
            lines += [f"Reason: {part['reason']}", '']
        tables = {k: v for k, v in part['results'].items()
                  if isinstance(v, list) and v}
        if not tables:
            tables = {'status': [dict(status=part['status'],
                                      reason=part.get('reason'))]}
        for table, rows in tables.items():
            lines += [f'{table}:', '', markdown_table(rows), '']
    with open(path, 'w') as f:
        f.write('\n'.join(lines))



def write_report(report, out_dir):
    """Write ``gpu_check.json`` and ``gpu_check.md`` to ``out_dir``.

    The JSON file first: it is complete even if the Markdown fails.

    Args:
        report (dict): What ``gpu_check.main`` gathered.
        out_dir (str): An existing folder.
    """
    with open(osp.join(out_dir, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=1)
    write_markdown(report, osp.join(out_dir, 'gpu_check.md'))

"""The demo's results.md links each seed's AnSS report."""
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
import demo_report  # noqa: E402


def test_links_only_existing_reports(tmp_path):
    report = tmp_path / 'seed_1' / 'lgr' / 'anss_anchors_report.md'
    report.parent.mkdir(parents=True)
    report.write_text('# AnSS anchor sentences\n')
    line = demo_report.anss_report_links(dict(seeds=[0, 1]), str(tmp_path))
    assert line == ('Anchor sentences kept and dropped by AnSS, per class: '
                    '[seed 1](seed_1/lgr/anss_anchors_report.md).')
    assert demo_report.anss_report_links(dict(seeds=[0]),
                                         str(tmp_path)) == ''

"""docs/data_preparation.md: its commands name real tools, options and
configs (parsed with the tools' own parsers, nothing is run)."""
import os.path as osp
import re
import shlex

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOC = osp.join(REPO, 'docs', 'data_preparation.md')


def doc_commands():
    """``python tools/...`` commands of the code blocks, lines joined."""
    text = open(DOC).read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        joined = re.sub(r'\\\n\s*', ' ', block)
        for line in joined.split('\n'):
            line = line.split('#')[0].strip()
            if line.startswith('python tools/'):
                commands.append(shlex.split(line)[1:])
    return commands


def test_commands_parse(load_tool):
    commands = doc_commands()
    tools = sorted({argv[0] for argv in commands})
    assert tools == [
        'tools/data/check_data_root.py', 'tools/data/imagenet_lt_labels.py',
        'tools/data/inat2018_labels.py', 'tools/data/places_lt_labels.py'
    ]
    for script, *args in commands:
        args = parse(load_tool(script), args)
        if script.endswith('check_data_root.py'):
            assert osp.isfile(osp.join(REPO, args.config)), args.config


def parse(tool, args):
    try:
        return tool.parse_args(args)
    except SystemExit:  # argparse refused the documented command
        pytest.fail(f'{DOC}: {tool.__name__} {" ".join(args)} does not parse')


def test_links_and_files_named():
    text = open(DOC).read()
    for link in ('https://arxiv.org/abs/2111.13579',
                 'https://github.com/ChangyaoTian/VL-LTR',
                 'https://github.com/zhmiao/OpenLongTailRecognition-OLTR',
                 'https://github.com/visipedia/inat_comp/tree/master/2018',
                 'http://places2.csail.mit.edu/download.html'):
        assert f'<{link}>' in text, link
    for path in re.findall(r'`(configs/[^`*{]+\.py)`', text) + re.findall(
            r'`(tools/[^`]+\.py)`', text) + re.findall(
                r'`(vlltr_mm/[^`]+\.py)`', text):
        assert osp.isfile(osp.join(REPO, path)), path

"""build_class_text.py against recorded MediaWiki replies on 127.0.0.1."""
import importlib.util
import json
import os
import os.path as osp
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nltk
import pytest

from vlltr_mm.datasets.class_text import ClassTextCorpus

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    'build_class_text', osp.join(ROOT, 'tools', 'text', 'build_class_text.py'))
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

UA = 'vlltr-tests/1.0 (test@example.org)'
NAMES = ['tabby cat', 'jaguar', 'zorblax', 'ocelot']
TABBY = ('A tabby is any domestic cat with a distinctive coat pattern.\n'
         'Tabbies have an M-shaped marking on the forehead.\n\n'
         '== Appearance ==\nThe stripes are dark on a lighter ground.\n\n'
         '== References ==\nSmith, J. (2000). Cats. Cat Press.')
JAGUAR = ('The jaguar is a large cat species native to the Americas.\n\n'
          '== Etymology ==\nThe word comes from Tupian languages.')
OCELOT = 'The ocelot is a medium-sized spotted wild cat.'


def page(title, extract=None, **extra):
    p = dict(ns=0, title=title, **extra)
    if extract is None:
        p['missing'] = True
    else:
        p.update(pageid=abs(hash(title)) % 10**6, extract=extract)
    return p


def extract_reply(pages, **query):
    return dict(batchcomplete=True, query=dict(pages=pages, **query))


DISAMBIG = dict(pageprops=dict(disambiguation=''))

# Replies in the API's formatversion=2 shape, keyed by what was asked.
RECORDED = {
    ('extract', 'tabby cat'): [(200, extract_reply(
        [page('Tabby cat', TABBY)],
        normalized=[dict(fromencoded=False, to='Tabby cat', **{
            'from': 'tabby cat'})],
        redirects=[dict(to='Tabby cat', **{'from': 'Tabby cat'})]))],
    ('extract', 'jaguar'): [(200, extract_reply(
        [page('Jaguar (disambiguation)', 'Jaguar may refer to:', **DISAMBIG)]
    ))],
    ('search', 'jaguar'): [(200, dict(query=dict(
        searchinfo=dict(totalhits=2),
        search=[dict(ns=0, title='Jaguar (disambiguation)'),
                dict(ns=0, title='Jaguar')])))],
    ('extract', 'Jaguar (disambiguation)'): [(200, extract_reply(
        [page('Jaguar (disambiguation)', 'Jaguar may refer to:',
              **DISAMBIG)]))],
    ('extract', 'Jaguar'): [(200, extract_reply([page('Jaguar', JAGUAR)]))],
    ('extract', 'zorblax'): [(200, extract_reply([page('Zorblax')]))],
    ('search', 'zorblax'): [(200, dict(query=dict(
        searchinfo=dict(totalhits=0), search=[])))],
    # a transient 503, then the maxlag error MediaWiki sends when lagged
    ('extract', 'ocelot'): [
        (503, {'error': 'busy'}),
        (200, dict(error=dict(code='maxlag', info='Waiting for a replica'))),
        (200, extract_reply([page('Ocelot', OCELOT)])),
    ],
}


class FakeWiki(ThreadingHTTPServer):

    def __init__(self, replies):
        super().__init__(('127.0.0.1', 0), WikiHandler)
        self.replies = {k: list(v) for k, v in replies.items()}
        self.log = []

    @property
    def url(self):
        return f'http://127.0.0.1:{self.server_address[1]}/w/api.php'


class WikiHandler(BaseHTTPRequestHandler):

    def do_GET(self):  # noqa: N802
        params = dict(urllib.parse.parse_qsl(
            urllib.parse.urlparse(self.path).query))
        self.server.log.append((time.monotonic(), params,
                                self.headers.get('User-Agent')))
        key = (('search', params.get('srsearch')) if 'list' in params else
               ('extract', params.get('titles')))
        queue = self.server.replies.get(key, [(404, {'error': 'no'})])
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        if status == 503:
            self.send_header('Retry-After', '0')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def wiki():
    server = FakeWiki(RECORDED)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(server, **kwargs):
    kwargs = dict(dict(api_url=server.url, min_interval=0, backoff=0.01,
                       max_retries=3, timeout=5, user_agent=UA), **kwargs)
    return tool.WikipediaClient(**kwargs)


def test_build_from_recorded_api_and_corpus_reads_it(wiki, tmp_path):
    out = str(tmp_path / 'text')
    report = tool.build_class_text(out, NAMES, client=client(wiki),
                                   progress=False)
    assert report == dict(fetched=[0, 1, 3], skipped=[], no_page=[2],
                          failed=[], errors={})
    read = lambda i: open(osp.join(out, 'wiki', f'desc_{i}.txt')).read()  # noqa
    assert read(0) == TABBY + '\n' and read(1) == JAGUAR + '\n'
    assert read(3) == OCELOT + '\n'
    assert not osp.exists(osp.join(out, 'wiki', 'desc_2.txt'))
    assert open(osp.join(out, 'labels.txt')).read() == '\n'.join(NAMES) + '\n'
    assert open(osp.join(out, 'no_page.txt')).read() == '2\tzorblax\n'
    state = json.load(open(osp.join(out, 'build_state.json')))['classes']
    assert state['1'] == dict(name='jaguar', status='ok', title='Jaguar')
    for _, params, agent in wiki.log:
        assert agent == UA
        assert params['format'] == 'json' and params['maxlag'] == '5'
        if 'titles' in params:
            assert params['explaintext'] == '1' and params['redirects'] == '1'
            assert params['exsectionformat'] == 'wiki'
    # ocelot took three tries: 503, maxlag, success
    assert sum(p.get('titles') == 'ocelot' for _, p, _ in wiki.log) == 3
    # the authors' layout we wrote is what the corpus reads
    with pytest.warns(UserWarning, match=r"prompts only: \['zorblax'\]"):
        corpus = ClassTextCorpus(labels_file=osp.join(out, 'labels.txt'),
                                 wiki_dir=out, templates='simple')
    assert corpus.sentences[7:10] == [
        'A tabby is any domestic cat with a distinctive coat pattern.',
        'Tabbies have an M-shaped marking on the forehead.',
        'The stripes are dark on a lighter ground.'
    ]
    assert not any('Cat Press' in s for s in corpus.sentences)


def test_resume_skips_finished_classes(wiki, tmp_path):
    out = str(tmp_path / 'text')
    tool.build_class_text(out, NAMES, client=client(wiki), progress=False)
    before = len(wiki.log)
    report = tool.build_class_text(out, NAMES, client=client(wiki),
                                   progress=False)
    assert report['skipped'] == [0, 1, 2, 3] and len(wiki.log) == before
    report = tool.build_class_text(out, NAMES, client=client(wiki),
                                   retry_missing=True, progress=False)
    asked = [p.get('titles') or p.get('srsearch') for _, p, _ in
             wiki.log[before:]]
    assert asked == ['zorblax', 'zorblax']
    assert report['skipped'] == [0, 1, 3] and report['no_page'] == [2]
    # a deleted description is fetched again
    os.remove(osp.join(out, 'wiki', 'desc_1.txt'))
    report = tool.build_class_text(out, NAMES, client=client(wiki),
                                   progress=False)
    assert report['fetched'] == [1]
    with pytest.raises(ValueError, match='another class list'):
        tool.build_class_text(out, ['x'], client=client(wiki),
                              progress=False)


def test_rate_limit_and_backoff(wiki, tmp_path):
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    c = client(wiki, min_interval=0.15, backoff=0.05, sleep=sleep)
    tool.build_class_text(str(tmp_path / 'o'), ['tabby cat', 'ocelot'],
                          client=c, progress=False)
    starts = [t for t, _, _ in wiki.log]
    assert len(starts) == 4
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.14
    # first retry waits backoff, the second twice as long
    assert 0.05 in sleeps and 0.1 in sleeps
    assert c.num_requests == 4


def test_exhausted_retries_fail_then_rerun_recovers(wiki, tmp_path, capsys):
    wiki.replies[('extract', 'ocelot')] = [(503, {})]
    args = [str(tmp_path / 'o'), '--class-names', 'tabby cat', 'ocelot',
            '--api-url', wiki.url, '--min-interval', '0', '--backoff',
            '0.01', '--max-retries', '2', '--user-agent', UA,
            '--no-progress']
    assert tool.main(args) == 1
    printed = capsys.readouterr().out
    assert 'failed 1' in printed and 'failed (rerun to retry): ocelot' in (
        printed)
    assert 'after 3 attempts (HTTP 503)' in printed  # the cause is shown
    state = json.load(open(tmp_path / 'o' / 'build_state.json'))['classes']
    assert state['1']['status'] == 'failed'
    assert 'after 3 attempts (HTTP 503)' in state['1']['error']
    wiki.replies[('extract', 'ocelot')] = [
        (200, extract_reply([page('Ocelot', OCELOT)]))
    ]
    assert tool.main(args) == 0
    assert 'fetched 1, skipped 1' in capsys.readouterr().out


def test_permanent_errors_are_not_retried(wiki, tmp_path):
    c = client(wiki)
    with pytest.raises(RuntimeError, match='HTTP 404'):
        c.get(titles='unknown title')
    assert len(wiki.log) == 1
    wiki.replies[('extract', 'bad')] = [
        (200, dict(error=dict(code='badvalue', info='Unrecognised value')))
    ]
    with pytest.raises(RuntimeError, match='badvalue'):
        c.get(titles='bad')


def test_cli_with_labels_file(wiki, tmp_path, capsys):
    labels = tmp_path / 'labels.txt'
    labels.write_text('n00000001 0 tabby_cat\nn00000002 1 zorblax\n')
    assert tool.main([str(tmp_path / 'o'), '--labels-file', str(labels),
                      '--api-url', wiki.url, '--min-interval', '0',
                      '--user-agent', UA, '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert 'fetched 1' in printed and 'without a page 1 of 2' in printed
    assert 'zorblax' in printed
    assert (tmp_path / 'o' / 'labels.txt').read_text() == (
        'tabby cat\nzorblax\n')


def closed_port_url():
    """An api.php URL on a localhost port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return f'http://127.0.0.1:{port}/w/api.php'


def test_no_network_stops_at_once(tmp_path):
    """A refused connection ends the run on the first request, exit 2."""
    out = tmp_path / 'o'
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'text',
                                  'build_class_text.py'), str(out),
         '--class-names', 'tabby cat', 'ocelot', 'jaguar', '--api-url',
         closed_port_url(), '--min-interval', '0', '--no-progress'],
        capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    assert 'no network: cannot reach http://127.0.0.1:' in result.stderr
    assert 'ConnectionRefusedError' in result.stderr
    assert '--source wordnet' in result.stderr
    assert elapsed < 10  # was 62 s of retries per class
    assert not osp.exists(out / 'wiki' / 'desc_0.txt')


def test_retry_policy(wiki):
    """Refused connections are not retried; a timeout after a reply is."""
    c = tool.WikipediaClient(api_url=closed_port_url(), min_interval=0,
                             backoff=0, max_retries=3)
    with pytest.raises(tool.NoNetworkError, match='ConnectionRefused'):
        c.get(titles='x')
    assert c.num_requests == 1
    calls = []

    def flaky(request, timeout):
        calls.append(timeout)
        if len(calls) == 2:
            raise socket.timeout('timed out')
        return urllib.request.urlopen(request, timeout=timeout)

    import urllib.request
    c = client(wiki, opener=flaky, timeout=20)
    c.get(titles='tabby cat')  # first reply: the network works
    c.get(titles='tabby cat')  # timeout, then retried successfully
    assert len(calls) == 3
    # before the first reply the timeout is capped to report "no network"
    first = sys.modules[tool.WikipediaClient.__module__].FIRST_TIMEOUT
    assert calls[0] == first == 10 and calls[1] == 20


def test_bad_inputs_are_named(wiki, tmp_path, capsys):
    out = tmp_path / 'o'
    base = ['--api-url', wiki.url, '--min-interval', '0', '--user-agent',
            UA, '--no-progress']
    assert tool.main([str(out), '--class-names', 'jaguar', 'ocelot',
                      'jaguar'] + base) == 2
    assert "class name 'jaguar' is given twice (classes 0 and 2)" in (
        capsys.readouterr().err)
    old = os.umask(0o022)
    try:
        assert tool.main([str(out), '--class-names', 'tabby cat'] + base) \
            == 0
    finally:
        os.umask(old)
    for name in ('labels.txt', 'build_state.json', 'no_page.txt',
                 'wiki/desc_0.txt'):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name
    state = out / 'build_state.json'
    state.write_text(state.read_text()[:10])  # truncated by a crash
    assert tool.main([str(out), '--class-names', 'tabby cat'] + base) == 2
    err = capsys.readouterr().err
    assert f'{state} is damaged' in err and '--restart' in err
    assert tool.main([str(out), '--class-names', 'tabby cat', '--restart']
                     + base) == 0
    assert 'fetched 1' in capsys.readouterr().out


def write_tiny_wordnet(root):
    """A 4-synset WordNet 3.0-format database (byte offsets consistent)."""
    synsets = [
        ('entity', ['entity'], 'that which exists', None),
        ('animal', ['animal', 'beast'], 'a living organism that moves',
         'entity'),
        ('cat', ['cat', 'true_cat'], 'feline mammal with thick soft fur',
         'animal'),
        ('tabby', ['tabby', 'tabby_cat'],
         'a cat with a grey or tawny coat mottled with black', 'cat'),
    ]
    header = '  1 A tiny test lexicon in the WordNet database format.\n'

    def render(offsets):
        text, at = header, {}
        for key, lemmas, gloss, hyper in synsets:
            ptrs = [f'@ {offsets[hyper]:08d} n 0000'] if hyper else []
            ptrs += [f'~ {offsets[k]:08d} n 0000'
                     for k, _, _, h in synsets if h == key]
            words = ' '.join(f'{w} 0' for w in lemmas)
            at[key] = len(text)
            text += (f'{offsets[key]:08d} 03 n {len(lemmas):02x} {words} '
                     f'{len(ptrs):03d} {" ".join(ptrs)} | {gloss}  \n')
        return text, at

    offsets = {s[0]: 0 for s in synsets}
    for _ in range(10):  # offsets are 8 digits, so this settles at once
        text, at = render(offsets)
        if at == offsets:
            break
        offsets = at
    folder = root / 'corpora' / 'wordnet'
    folder.mkdir(parents=True)
    (folder / 'data.noun').write_text(text)
    index = {}
    for key, lemmas, _, _ in synsets:
        for w in lemmas:
            index.setdefault(w, []).append(offsets[key])
    (folder / 'index.noun').write_text(header + ''.join(
        f'{w} n {len(o)} 1 @ {len(o)} 0 ' +
        ' '.join(f'{x:08d}' for x in o) + '  \n'
        for w, o in sorted(index.items())))
    for pos in ('verb', 'adj', 'adv'):
        (folder / f'data.{pos}').write_text(header)
        (folder / f'index.{pos}').write_text(header)
    for name in ('noun.exc', 'verb.exc', 'adj.exc', 'adv.exc', 'index.sense',
                 'cntlist.rev'):
        (folder / name).write_text('')
    (folder / 'lexnames').write_text(
        '00\tadj.all\t3\n01\tadj.pert\t3\n02\tadv.all\t4\n03\tnoun.Tops\t1\n')
    return offsets


def test_wordnet_glosses_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, 'path', [str(tmp_path / 'none')])
    with pytest.raises(RuntimeError, match='nltk.downloader wordnet'):
        tool.load_wordnet()
    offsets = write_tiny_wordnet(tmp_path / 'nltk_data')
    names = ['tabby cat', 'unicornfish', f'n{offsets["cat"]:08d}']
    out = tmp_path / 'o'
    assert tool.main([str(out), '--source', 'wordnet', '--nltk-data',
                      str(tmp_path / 'nltk_data'), '--no-progress',
                      '--class-names', *names]) == 0
    assert (out / 'wiki' / 'desc_0.txt').read_text() == (
        'Tabby cat is a cat with a grey or tawny coat mottled with black.\n'
        'Tabby cat is also called tabby.\n'
        'A tabby cat is a kind of cat: feline mammal with thick soft fur.\n')
    assert not (out / 'wiki' / 'desc_1.txt').exists()
    assert (out / 'wiki' / 'desc_2.txt').read_text().splitlines() == [
        'Cat is feline mammal with thick soft fur.',
        'Cat is also called true cat.',
        'A cat is a kind of animal: a living organism that moves.',
        'Kinds of cat include tabby.'
    ]
    assert (out / 'no_page.txt').read_text() == '1\tunicornfish\n'

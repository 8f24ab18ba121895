"""Build class descriptions in the authors' layout for any class list.

Writes ``OUT_DIR/labels.txt`` (one class name per line) and
``OUT_DIR/wiki/desc_{i}.txt`` (MediaWiki plain text with ``== Section ==``
headers), the layout ``ClassTextCorpus(wiki_dir=...)`` reads.

Sources:

* ``wikipedia``: the MediaWiki API (stdlib ``urllib``). The class name is
  tried as a page title (redirects followed); a missing, empty or
  disambiguation page falls back to the top search hits. Requests are
  rate-limited, retried with exponential back-off (``Retry-After`` and
  ``maxlag`` honoured) and the build resumes: finished classes are skipped
  (state in ``OUT_DIR/build_state.json``). Classes without a page are
  listed in ``OUT_DIR/no_page.txt``; the corpus then uses prompts for them.
* ``wordnet``: offline WordNet glosses (definition, synonyms, hypernyms,
  hyponyms) when NLTK's ``wordnet`` corpus is installed. Names that are
  WordNet ids (``n02123045``) map to their synset directly.

Example::

    python tools/text/build_class_text.py data/imagenet_lt_text \\
        --labels-file data/imagenet/labels.txt --lang en
"""
import argparse
import json
import os
import os.path as osp
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, List, Optional, Sequence, Tuple

DEFAULT_USER_AGENT = ('vlltr_mm-build-class-text/0.1 (research tool; '
                      'set --user-agent to include your contact)')
_RETRY_HTTP = {429, 500, 502, 503, 504}
_RETRY_API = {'maxlag', 'ratelimited', 'internal_api_error_DBQueryError'}
_WNID = re.compile(r'^n(\d{8})$')


class WikipediaClient:
    """Polite MediaWiki API client.

    Args:
        lang (str): Wikipedia language code. Defaults to ``'en'``.
        api_url (str, optional): Full ``api.php`` URL; overrides ``lang``.
        min_interval (float): Seconds between request starts. Defaults to 1.
        max_retries (int): Retries per request. Defaults to 5.
        backoff (float): First retry delay; doubles each retry. Defaults to
            2.
        timeout (float): Socket timeout in seconds. Defaults to 30.
        user_agent (str): Sent with every request (Wikimedia requires one).
        search_limit (int): Search hits tried after the title. Defaults to 3.
        opener (callable, optional): ``urllib``-style ``open(request,
            timeout=)``. Defaults to ``urllib.request.urlopen``.
        sleep (callable): Defaults to ``time.sleep``.
    """

    def __init__(self, lang: str = 'en', api_url: Optional[str] = None,
                 min_interval: float = 1.0, max_retries: int = 5,
                 backoff: float = 2.0, timeout: float = 30.0,
                 user_agent: str = DEFAULT_USER_AGENT, search_limit: int = 3,
                 opener: Optional[Callable] = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api_url = api_url or f'https://{lang}.wikipedia.org/w/api.php'
        self.min_interval = min_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.user_agent = user_agent
        self.search_limit = search_limit
        self._open = opener or urllib.request.urlopen
        self._sleep = sleep
        self._last = -float('inf')
        self.num_requests = 0

    def get(self, **params) -> dict:
        """One API call (``format=json``, v2), retried on transient errors.

        Raises:
            RuntimeError: Retries exhausted or a permanent API error.
        """
        params = dict(action='query', format='json', formatversion=2,
                      maxlag=5, **params)
        url = f'{self.api_url}?{urllib.parse.urlencode(params)}'
        request = urllib.request.Request(
            url, headers={'User-Agent': self.user_agent})
        problem = ''
        for attempt in range(self.max_retries + 1):
            wait = self.min_interval - (time.monotonic() - self._last)
            if wait > 0:
                self._sleep(wait)
            self._last = time.monotonic()
            self.num_requests += 1
            delay = self.backoff * 2**attempt
            try:
                with self._open(request, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read().decode('utf-8'))
            except urllib.error.HTTPError as e:
                if e.code not in _RETRY_HTTP:
                    raise RuntimeError(f'HTTP {e.code} for {url}') from e
                problem = f'HTTP {e.code}'
                retry_after = (e.headers or {}).get('Retry-After')
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            except (urllib.error.URLError, socket.timeout, ConnectionError,
                    json.JSONDecodeError) as e:
                problem = f'{type(e).__name__}: {e}'
            else:
                error = reply.get('error')
                if not error:
                    return reply
                if error.get('code') not in _RETRY_API:
                    raise RuntimeError(f'API error {error} for {url}')
                problem = f"API error {error.get('code')}"
            if attempt < self.max_retries:
                self._sleep(delay)
        raise RuntimeError(f'giving up on {url} after {self.max_retries + 1}'
                           f' attempts ({problem})')

    def _extract(self, title: str) -> Optional[Tuple[str, str]]:
        reply = self.get(titles=title, redirects=1,
                         prop='extracts|pageprops', ppprop='disambiguation',
                         explaintext=1, exsectionformat='wiki')
        for page in reply.get('query', {}).get('pages', []):
            text = (page.get('extract') or '').strip()
            if (page.get('missing') or page.get('invalid') or not text
                    or 'disambiguation' in page.get('pageprops', {})):
                continue
            return page['title'], text
        return None

    def fetch(self, name: str) -> Optional[Tuple[str, str]]:
        """Best page for a class name: ``(title, plain text)`` or None."""
        found = self._extract(name)
        if found is not None:
            return found
        reply = self.get(list='search', srsearch=name,
                         srlimit=self.search_limit, srnamespace=0)
        for hit in reply.get('query', {}).get('search', []):
            found = self._extract(hit['title'])
            if found is not None:
                return found
        return None


def wordnet_text(name: str, wordnet) -> Optional[str]:
    """A short description of ``name`` from WordNet, or None."""
    match = _WNID.match(name)
    if match:
        synset = wordnet.synset_from_pos_and_offset('n', int(match.group(1)))
    else:
        synsets = wordnet.synsets(name.strip().replace(' ', '_'), pos='n')
        if not synsets:
            return None
        synset = synsets[0]  # most frequent sense

    def words(s, k=None):
        return [n.replace('_', ' ') for n in s.lemma_names()][:k]

    head = name if not match else words(synset)[0]
    lines = [f'{head[:1].upper()}{head[1:]} is {synset.definition()}.']
    others = [w for w in words(synset) if w.lower() != head.lower()]
    if others:
        lines.append(f'{head[:1].upper()}{head[1:]} is also called '
                     f'{", ".join(others)}.')
    for hyper in synset.hypernyms()[:2]:
        lines.append(f'A {head} is a kind of {words(hyper)[0]}: '
                     f'{hyper.definition()}.')
    kinds = [words(h)[0] for h in synset.hyponyms()[:8]]
    if kinds:
        lines.append(f'Kinds of {head} include {", ".join(kinds)}.')
    return '\n'.join(lines) + '\n'


def load_wordnet(nltk_data_dir: Optional[str] = None):
    """NLTK's WordNet corpus reader, or a clear error if it is missing.

    Args:
        nltk_data_dir (str, optional): An extra NLTK data root (holding
            ``corpora/wordnet``) to search.
    """
    import nltk
    if nltk_data_dir is not None:
        nltk_data_dir = osp.abspath(nltk_data_dir)
        if nltk_data_dir not in nltk.data.path:
            nltk.data.path.append(nltk_data_dir)
    for resource in ('corpora/wordnet', 'corpora/wordnet.zip'):
        try:
            nltk.data.find(resource)
            break
        except LookupError:
            continue
    else:
        raise RuntimeError(
            "NLTK's wordnet corpus is not installed; run `python -m "
            'nltk.downloader wordnet` (or pass --nltk-data) or use '
            '--source wikipedia')
    from nltk.corpus import wordnet
    return wordnet


def _write_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', dir=osp.dirname(path))
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, path)


def build_class_text(out_dir: str, class_names: Sequence[str],
                     source: str = 'wikipedia',
                     client: Optional[WikipediaClient] = None,
                     wordnet=None, retry_missing: bool = False,
                     progress: bool = True) -> dict:
    """Fetch a description per class into ``out_dir`` (resumable).

    Args:
        out_dir (str): Output folder (``labels.txt``, ``wiki/``).
        class_names (Sequence[str]): Names in label order.
        source (str): ``'wikipedia'`` or ``'wordnet'``.
        client (WikipediaClient, optional): For ``'wikipedia'``.
        wordnet (optional): An NLTK WordNet reader for ``'wordnet'``.
        retry_missing (bool): Retry classes recorded without a page.
        progress (bool): Show a progress bar.

    Returns:
        dict: ``fetched``, ``skipped``, ``no_page``, ``failed`` (lists of
        class indices for this run; ``no_page`` covers all runs).
    """
    from tqdm import tqdm

    if source not in ('wikipedia', 'wordnet'):
        raise ValueError(f'unknown source {source!r}')
    wiki = osp.join(out_dir, 'wiki')
    os.makedirs(wiki, exist_ok=True)
    labels = osp.join(out_dir, 'labels.txt')
    names = [str(n).strip() for n in class_names]
    if osp.isfile(labels):
        with open(labels, encoding='utf-8') as f:
            if f.read().splitlines() != names:
                raise ValueError(f'{labels} holds another class list; use a '
                                 'new output folder')
    else:
        _write_atomic(labels, '\n'.join(names) + '\n')
    state_file = osp.join(out_dir, 'build_state.json')
    state = {}
    if osp.isfile(state_file):
        with open(state_file, encoding='utf-8') as f:
            state = json.load(f).get('classes', {})
    if source == 'wikipedia':
        client = client or WikipediaClient()
        fetch = client.fetch
    else:
        wordnet = wordnet or load_wordnet()

        def fetch(name):
            text = wordnet_text(name, wordnet)
            return None if text is None else (name, text)

    report = dict(fetched=[], skipped=[], no_page=[], failed=[])
    for i in tqdm(range(len(names)), desc=f'class text ({source})',
                  disable=not progress):
        entry = state.get(str(i), {})
        desc = osp.join(wiki, f'desc_{i}.txt')
        if ((entry.get('status') == 'ok' and osp.isfile(desc))
                or (entry.get('status') == 'no_page' and not retry_missing)):
            report['skipped'].append(i)
            continue
        try:
            found = fetch(names[i])
        except RuntimeError as e:
            state[str(i)] = dict(name=names[i], status='failed',
                                 error=str(e))
            report['failed'].append(i)
        else:
            if found is None:
                state[str(i)] = dict(name=names[i], status='no_page')
            else:
                _write_atomic(desc, found[1].rstrip('\n') + '\n')
                state[str(i)] = dict(name=names[i], status='ok',
                                     title=found[0])
                report['fetched'].append(i)
        _write_atomic(state_file,
                      json.dumps(dict(source=source, classes=state),
                                 indent=1))
    report['no_page'] = sorted(
        int(k) for k, v in state.items() if v['status'] == 'no_page')
    _write_atomic(osp.join(out_dir, 'no_page.txt'), ''.join(
        f'{i}\t{names[i]}\n' for i in report['no_page']))
    return report


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument('--labels-file', help='one class name per line (or '
                       "the authors' ImageNet-LT / Places-LT labels.txt)")
    names.add_argument('--class-names', nargs='+')
    parser.add_argument('--source', default='wikipedia',
                        choices=['wikipedia', 'wordnet'])
    parser.add_argument('--lang', default='en')
    parser.add_argument('--api-url', help='api.php URL (overrides --lang)')
    parser.add_argument('--min-interval', type=float, default=1.0)
    parser.add_argument('--max-retries', type=int, default=5)
    parser.add_argument('--backoff', type=float, default=2.0)
    parser.add_argument('--timeout', type=float, default=30.0)
    parser.add_argument('--user-agent', default=DEFAULT_USER_AGENT)
    parser.add_argument('--nltk-data',
                        help='extra NLTK data root holding corpora/wordnet')
    parser.add_argument('--retry-missing', action='store_true')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.labels_file:
        from vlltr_mm.datasets.class_text import text_sources
        class_names = text_sources.read_labels_file(args.labels_file)
    else:
        class_names = args.class_names
    client = wordnet = None
    if args.source == 'wikipedia':
        client = WikipediaClient(
            lang=args.lang, api_url=args.api_url,
            min_interval=args.min_interval, max_retries=args.max_retries,
            backoff=args.backoff, timeout=args.timeout,
            user_agent=args.user_agent)
    else:
        wordnet = load_wordnet(args.nltk_data)
    report = build_class_text(args.out_dir, class_names, args.source,
                              client, wordnet, args.retry_missing,
                              not args.no_progress)
    print(f"fetched {len(report['fetched'])}, skipped "
          f"{len(report['skipped'])} (done before), failed "
          f"{len(report['failed'])}, without a page "
          f"{len(report['no_page'])} of {len(class_names)} classes")
    if report['no_page']:
        print('classes without a page (prompts only; see no_page.txt): ' +
              ', '.join(class_names[i] for i in report['no_page']))
    if report['failed']:
        print('failed (rerun to retry): ' +
              ', '.join(class_names[i] for i in report['failed']))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

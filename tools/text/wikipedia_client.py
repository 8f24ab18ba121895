"""A polite MediaWiki API client for ``build_class_text.py``.

Requests are rate-limited and retried with exponential back-off only where
retrying can help; a machine without network is recognised on the first
request (:class:`NoNetworkError`) instead of being retried class by class.
"""
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Optional, Tuple

DEFAULT_USER_AGENT = ('vlltr_mm-build-class-text/0.1 (research tool; '
                      'set --user-agent to include your contact)')
#: Seconds the first request may take before the network counts as absent.
FIRST_TIMEOUT = 10.0
_RETRY_HTTP = {429, 500, 502, 503, 504}
_RETRY_API = {'maxlag', 'ratelimited', 'internal_api_error_DBQueryError'}
# Worth retrying once the server has answered: it is there but slow or
# dropped one connection. DNS failures, refused connections and missing
# routes are not: they repeat for every request.
_TRANSIENT = (socket.timeout, TimeoutError, ConnectionResetError,
              ConnectionAbortedError, BrokenPipeError)


class NoNetworkError(RuntimeError):
    """The API server cannot be reached at all; stop instead of retrying."""


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
        self.num_ok = 0  # replies received (the network works)

    def get(self, **params) -> dict:
        """One API call (``format=json``, v2), retried on transient errors.

        Retried: timeouts and dropped connections (once a request has
        succeeded), HTTP 429 / 5xx (``Retry-After`` honoured), a truncated
        reply and MediaWiki's ``maxlag`` / rate-limit errors. Not retried:
        other HTTP 4xx and API errors, and failures to reach the server.

        Raises:
            NoNetworkError: The server cannot be reached (DNS failure,
                connection refused, no route; before the first success also
                a timeout): every further request would fail the same way.
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
            # Until the server has answered once, a silent network should
            # be reported within seconds, not after the full timeout.
            timeout = (self.timeout if self.num_ok else min(
                self.timeout, FIRST_TIMEOUT))
            try:
                with self._open(request, timeout=timeout) as resp:
                    reply = json.loads(resp.read().decode('utf-8'))
            except urllib.error.HTTPError as e:
                if e.code not in _RETRY_HTTP:
                    raise RuntimeError(f'HTTP {e.code} for {url}') from e
                problem = f'HTTP {e.code}'
                retry_after = (e.headers or {}).get('Retry-After')
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, 'reason', e)
                transient = isinstance(reason, _TRANSIENT) and self.num_ok
                if not transient:
                    raise NoNetworkError(
                        f'cannot reach {self.api_url}: '
                        f'{type(reason).__name__}: {reason}') from e
                problem = f'{type(reason).__name__}: {reason}'
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                problem = f'truncated reply ({e})'
            else:
                self.num_ok += 1
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

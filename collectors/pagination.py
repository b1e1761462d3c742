"""Following an API's pages, shared (like singer-sdk's paginators): one small class per style.

A paginator holds the token of the page to ask for next (`current`, None for the first one),
reads from each page whether there is another (`has_more`) and its token (`get_next`), and
stops a run that would loop forever: a token seen before, or more pages than anyone has.
`pages(fetch)` drives one: it calls `fetch(token)` until the paginator is finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from collectors.base import CollectorError

MAX_PAGES = 10_000

Page = Mapping[str, Any]


class PaginationError(CollectorError):
    """The pages cannot be followed (a loop, or `has_more` without a token)."""


class NextPagePaginator:
    """`{"has_more": true, "next_page": "<token>"}` → ask again with `page=<token>` (the
    OpenAI and Anthropic admin APIs)."""

    def __init__(self, where: str, max_pages: int = MAX_PAGES) -> None:
        self.where = where  # names the endpoint in errors
        self.max_pages = max_pages
        self.current: str | None = None
        self.finished = False
        self.count = 0  # pages read so far
        self._seen: set[str] = set()

    def has_more(self, page: Page) -> bool:
        return page.get("has_more") is True

    def get_next(self, page: Page) -> str | None:
        token = page.get("next_page")
        return token if isinstance(token, str) and token else None

    def advance(self, page: Page) -> None:
        """Take in the page just read: move to the next token or finish."""
        self.count += 1
        if not self.has_more(page):
            self.finished = True
            return
        token = self.get_next(page)
        if token is None:
            raise PaginationError(f"{self.where}: has_more is true but next_page is empty")
        if token in self._seen or token == self.current:
            raise PaginationError(
                f"{self.where}: page {self.count} points back to a page already read "
                f"({token!r}); stopping instead of looping"
            )
        if self.count >= self.max_pages:
            raise PaginationError(f"{self.where}: more than {self.max_pages} pages; stopping")
        if self.current is not None:
            self._seen.add(self.current)
        self.current = token


class TokenPaginator(NextPagePaginator):
    """`{"NextPageToken": "<token>"}` → ask again with that token; no token, no more pages
    (AWS APIs without a boto3 paginator, e.g. Cost Explorer's GetCostAndUsage)."""

    def __init__(self, where: str, field: str = "NextPageToken", max_pages: int = MAX_PAGES):
        super().__init__(where, max_pages)
        self.field = field

    def has_more(self, page: Page) -> bool:
        return bool(page.get(self.field))

    def get_next(self, page: Page) -> str | None:
        token = page.get(self.field)
        return token if isinstance(token, str) and token else None


def pages(fetch: Callable[[str | None], Page], paginator: NextPagePaginator) -> Iterator[Page]:
    """Every page, in order: `fetch(token)` from the first (token None) to the last."""
    while not paginator.finished:
        page = fetch(paginator.current)
        yield page
        paginator.advance(page)

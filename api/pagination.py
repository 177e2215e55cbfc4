"""Page-number pagination that answers a malformed page or page_size with a 400 naming it."""
from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination


def single_query_value(request: Any, name: str) -> str | None:
    """The one value of query parameter `name` (None if absent); a repeated parameter is a 400 naming it."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise exceptions.ValidationError({name: ["Give this parameter once."]})
    return values[0]


_MAX_DIGITS = 9  # more pages than any list will have; page_size is capped at 100 anyway


def _positive_int(request: Any, name: str) -> int | None:
    raw = single_query_value(request, name)
    if raw is None:
        return None
    # The length check comes first: int() of more than 4,300 digits raises (Python's int-from-string limit).
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_DIGITS or int(raw) < 1:
        raise exceptions.ValidationError({name: [f"Must be a positive integer of at most {_MAX_DIGITS} digits."]})
    return int(raw)


class JobsPagination(PageNumberPagination):
    """`?page=N&page_size=M` answering {"count","next","previous","results"}; page_size is capped at 100.

    Unlike DRF's default, a malformed page or page_size is a 400 naming it rather than silently ignored;
    a page past the end stays DRF's 404.
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request: Any) -> int:
        wanted = _positive_int(request, self.page_size_query_param)
        return self.page_size if wanted is None else min(wanted, self.max_page_size)

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list | None:
        _positive_int(request, self.page_query_param)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Results per page (default {self.page_size}, at most {self.max_page_size})."
        return parameters

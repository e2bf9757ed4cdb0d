"""One page per pattern. The logic lives in likes.py, documents.py and booking.py."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from atomicops import InvalidInput, LockNotAcquired, rate_limit
from atomicops.engine import connection
from demo_project.demo import booking, documents, likes
from demo_project.demo.middleware import can_see_servers
from demo_project.demo.models import Document, Event, Post
from demo_project.demo.scripts import script as demo_script

# The seed's limiter: 10 hits per window. 20 s rather than 60 so a visitor who tries it
# twice does not wait a minute.
API_LIMIT = 10
API_WINDOW_MS = 20_000
RUSH_BUYERS = 12


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _signed_in_only(request: HttpRequest, what: str) -> HttpResponse | None:
    """A 403 for an anonymous visitor (None if signed in): resets and the naive path."""
    if request.user.is_authenticated:
        return None
    message = f"Sign in to {what}."
    if _wants_json(request):
        return JsonResponse({"status": "forbidden", "reason": message}, status=403)
    return HttpResponseForbidden(message)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    source = connection.describe_source() if can_see_servers(request) else None
    return render(request, "demo/home.html", {"redis_url": source})


# -- bounded counter ---------------------------------------------------------------


@require_GET
def post_list(request: HttpRequest) -> HttpResponse:
    rows = [(post, likes.stats(post)) for post in Post.objects.all()]
    return render(request, "demo/likes.html", {"rows": rows})


@require_POST
def like(request: HttpRequest, pk: int) -> HttpResponse:
    post = get_object_or_404(Post, pk=pk)
    result = likes.like(post)
    if _wants_json(request):
        return JsonResponse(
            {
                "post": post.pk,
                "likes": result.value,
                "applied": result.applied,
                "limit": likes.limit(),
            }
        )
    if result.applied:
        messages.success(request, f"Liked “{post}”: {result.value} of {likes.limit()}.")
    else:
        messages.warning(
            request,
            f"“{post}” is full at {result.value} of {likes.limit()}: the like was not counted.",
        )
    return redirect("demo:likes")


@require_GET
def stats_api(request: HttpRequest) -> JsonResponse:
    """Every post's likes, each read by the read-only script (EVALSHA_RO)."""
    script = demo_script(likes.STATS_SCRIPT)
    return JsonResponse(
        {
            "script": script.name,
            "sha": script.sha,
            "readonly": script.readonly,
            "posts": [likes.stats(post).as_json() for post in Post.objects.all()],
        }
    )


# -- compare-and-set ---------------------------------------------------------------


@require_GET
def document_list(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/documents.html", {"documents": Document.objects.all()})


def document_edit(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document, pk=pk)
    if request.method == "POST":
        title = request.POST.get("title", "").strip()[:200] or document.title
        body = request.POST.get("body", "")[: documents.MAX_BODY]
        saved_by = request.POST.get("saved_by", "").strip()[:100] or "anonymous"
        try:
            result = documents.save(
                document, request.POST.get("expected", ""), title, body, saved_by
            )
        except InvalidInput:
            messages.error(
                request, "That form was not loaded from this page; here is the document."
            )
            return redirect("demo:document", pk=pk)
        if result.saved:
            messages.success(request, f"Saved revision {result.current.rev}.")
            return redirect("demo:document", pk=pk)
        # Refused: keep the editor's text, show what won, and let them decide.
        context = {
            "document": document,
            "current": result.current,
            "conflict": {"title": title, "body": body, "saved_by": saved_by},
        }
        return render(request, "demo/document.html", context, status=409)
    if request.method != "GET":
        return HttpResponse(status=405)
    return render(
        request, "demo/document.html", {"document": document, "current": documents.load(document)}
    )


# -- lock with fencing token -------------------------------------------------------


@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/events.html", {"events": Event.objects.all()})


@require_GET
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    event = get_object_or_404(Event, pk=pk)
    context = {
        "event": event,
        "bookings": event.bookings.order_by("pk"),
        "oversold": event.booked > event.seats,
        "rush_buyers": RUSH_BUYERS,
    }
    return render(request, "demo/event.html", context)


@require_POST
def book(request: HttpRequest, pk: int) -> HttpResponse:
    event = get_object_or_404(Event, pk=pk)
    buyer = request.POST.get("buyer", "").strip()[:100] or "anonymous"
    naive = request.POST.get("naive") == "1"
    # The naive path oversells on purpose: not something any visitor may do to an event.
    if naive and (refused := _signed_in_only(request, "book without the lock")):
        return refused
    try:
        result = booking.book_seat(event.pk, buyer, use_lock=not naive)
    except LockNotAcquired:
        if _wants_json(request):
            return JsonResponse({"status": "busy", "buyer": buyer}, status=503)
        messages.error(request, "Too many buyers in line right now; try again.")
        return redirect("demo:event", pk=pk)
    if _wants_json(request):
        payload: dict[str, Any] = {
            "status": result.status,
            "buyer": result.buyer,
            "fencing_token": result.fencing_token,
            "reason": result.reason,
        }
        return JsonResponse(payload)
    if result.status == booking.BOOKED:
        messages.success(
            request, f"Booked a seat for {buyer} (fencing token {result.fencing_token})."
        )
    elif result.status == booking.SOLD_OUT:
        messages.warning(request, f"Sold out: {buyer} was not charged.")
    else:
        messages.error(request, f"{buyer} was charged and refunded: {result.reason}.")
    return redirect("demo:event", pk=pk)


@require_POST
def reset_event(request: HttpRequest, pk: int) -> HttpResponse:
    if refused := _signed_in_only(request, "reset an event"):
        return refused
    event = get_object_or_404(Event, pk=pk)
    try:
        booking.reset_event(event)
    except LockNotAcquired:
        messages.error(request, "Bookings are still running; reset again in a moment.")
    else:
        messages.success(request, f"{event} is empty again.")
    return redirect("demo:event", pk=pk)


# -- rate limit ----------------------------------------------------------------------


@require_GET
def ratelimit_page(request: HttpRequest) -> HttpResponse:
    context = {"limit": API_LIMIT, "window_s": API_WINDOW_MS // 1000, "calls": API_LIMIT + 2}
    return render(request, "demo/ratelimit.html", context)


@rate_limit(API_LIMIT, API_WINDOW_MS, key="ip", group="demo-api")
@require_GET
def api_ping(request: HttpRequest) -> JsonResponse:
    """A rate-limited API endpoint: 10 calls per 20 s per client address."""
    result = request.ratelimit  # type: ignore[attr-defined]
    return JsonResponse({"pong": True, "count": result.count, "remaining": result.remaining})

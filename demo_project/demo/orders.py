"""Placing an order with an Idempotency-Key: a double submit places it once.

A form submitted twice (a double click, a retry after a timeout, a flaky network) sends
the same order twice; without protection the customer is charged twice. The order page
sends a key with each order (one per loaded form) in the ``Idempotency-Key`` header, and
``@idempotent`` makes the key count once: the first request places the order; repeats
get the same answer back, marked ``Idempotent-Replayed: true``; a repeat that arrives
while the first is still being charged gets ``409`` and retries.

Orders are numbered by a Redis counter (``demo:orders:placed``), so the page can show
that five submits placed one order.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from atomicops import get_counter, idempotent, incr

ITEMS = {"tea": "A tin of tea", "mug": "A mug", "book": "A book about Lua"}
# How many times the page's "double submit" button sends the same order at once.
SUBMITS = 5
# How long a key is remembered: a client retrying the next day still gets its order back.
KEY_TTL = 3600


PLACED = "demo:orders:placed"


def orders_placed() -> int:
    """How many orders were really placed (the view body ran), whatever was submitted."""
    return get_counter(PLACED)


def _charge_delay() -> float:
    """Seconds the simulated payment takes (``DEMO_ORDER_DELAY``): long enough for the
    double submit's repeats to arrive while the first is still running."""
    return float(getattr(settings, "DEMO_ORDER_DELAY", 0.5))


@require_GET
def order_page(request: HttpRequest) -> HttpResponse:
    context = {
        "items": ITEMS,
        "key": uuid.uuid4().hex,  # one key per loaded form: reloading starts a new order
        "placed": orders_placed(),
        "submits": SUBMITS,
    }
    return render(request, "demo/orders.html", context)


@require_POST
@idempotent(ttl=KEY_TTL)
def place_order(request: HttpRequest) -> HttpResponse:
    item = request.POST.get("item", "")
    try:
        quantity = int(request.POST.get("quantity", "1"))
    except ValueError:
        quantity = 0
    if item not in ITEMS or not 1 <= quantity <= 10:
        # A 4xx is stored too: the same key and form get the same refusal.
        return JsonResponse({"status": "invalid", "reason": "pick an item and 1 to 10"}, status=400)
    time.sleep(_charge_delay())  # the payment provider
    number = incr(PLACED)
    order = {"status": "placed", "order": number, "item": ITEMS[item], "quantity": quantity}
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(order, status=201)
    # A plain form post (no JavaScript) carries no key: nothing stops a second submit.
    messages.success(request, f"Order #{number} placed: {quantity} × {ITEMS[item]}.")
    return redirect("demo:orders")

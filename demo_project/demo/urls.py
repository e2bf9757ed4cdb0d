from django.urls import path

from demo_project.demo import orders, reports, views

app_name = "demo"

urlpatterns = [
    path("", views.home, name="home"),
    path("likes/", views.post_list, name="likes"),
    path("likes/<int:pk>/like/", views.like, name="like"),
    path("api/stats/", views.stats_api, name="stats"),
    path("documents/", views.document_list, name="documents"),
    path("documents/<int:pk>/", views.document_edit, name="document"),
    path("events/", views.event_list, name="events"),
    path("events/<int:pk>/", views.event_detail, name="event"),
    path("events/<int:pk>/book/", views.book, name="book"),
    path("events/<int:pk>/reset/", views.reset_event, name="reset_event"),
    path("ratelimit/", views.ratelimit_page, name="ratelimit"),
    path("api/ping/", views.api_ping, name="ping"),
    path("orders/", orders.order_page, name="orders"),
    path("orders/place/", orders.place_order, name="place_order"),
    path("report/", reports.report_page, name="report"),
    path("report/expire/", reports.expire_report, name="expire_report"),
]

from django.contrib import admin

from demo_project.demo.models import Booking, Document, Event, Post


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "like_count"]

    @admin.display(description="likes (Redis)")
    def like_count(self, post: Post) -> int:
        return post.likes.value


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["title", "revision", "saved_by", "updated_at"]


class BookingInline(admin.TabularInline):
    model = Booking
    extra = 0
    readonly_fields = ["buyer", "fencing_token", "created_at"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["name", "seats", "booked", "fence_token"]
    inlines = [BookingInline]


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = ["buyer", "event", "fencing_token", "created_at"]
    list_filter = ["event"]

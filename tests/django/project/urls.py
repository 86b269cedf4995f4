from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from .rides import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("enqueue/<str:rider>/", views.enqueue),
    path("book/", csrf_exempt(views.book)),
    path("abook/", csrf_exempt(views.abook)),
]

from django.contrib import admin
from django.urls import path
from rides import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("rides/", views.book),
    path("rides/<int:ride_id>/", views.show),
]

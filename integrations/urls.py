from django.urls import path

from . import openai_api

urlpatterns = [
    path("v1/chat/completions", openai_api.chat_completions, name="chat-completions"),
    path("v1/models", openai_api.models, name="models"),
]

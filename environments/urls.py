from django.urls import path

from . import api

urlpatterns = [
    path("environments", api.EnvironmentListCreateApi.as_view(), name="environment-list"),
    path("environments/<str:environment_id>", api.EnvironmentDeleteApi.as_view(), name="environment-detail"),
    path("environments/<str:environment_id>/upload", api.EnvironmentUploadApi.as_view(), name="environment-upload"),
    path("environments/<str:environment_id>/files", api.EnvironmentFilesApi.as_view(), name="environment-files"),
    path(
        "environments/<str:environment_id>/files/<str:file_id>",
        api.EnvironmentFileDeleteApi.as_view(),
        name="environment-file",
    ),
    path("profiles", api.ProfileListCreateApi.as_view(), name="profile-list"),
    path("profiles/<str:environment_id>", api.ProfileDeleteApi.as_view(), name="profile-detail"),
    path("profiles/<str:environment_id>/upload", api.ProfileUploadApi.as_view(), name="profile-upload"),
    path("profiles/<str:environment_id>/download", api.ProfileDownloadApi.as_view(), name="profile-download"),
    path("profiles/<str:environment_id>/archive", api.ProfileArchiveApi.as_view(), name="profile-archive"),
    path("files/upload", api.FileUploadApi.as_view(), name="file-upload"),
    path("files/<str:file_id>", api.FileDetailApi.as_view(), name="file-detail"),
    path("files/<str:file_id>/download", api.FileDownloadApi.as_view(), name="file-download"),
]

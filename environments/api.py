"""REST endpoints: environments and their profile view (api.md §5.1), files (§5.2)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import signing
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from enigma_site.api import ApiView, object_body, ok, public_base_url
from enigma_site.errors import ApiError
from enigma_site.ratelimit import RateLimited, rate_limit_hit
from enigma_site.serializers import SuccessMessageSerializer, validated

from . import selectors, services, storage
from . import serializers as shapes
from .archive import build_profile_archive
from .errors import EnvironmentNotFound, FileNotFound, NoProfileData
from .models import Environment

DOWNLOAD_SALT = "enigma.profile-download"
DOWNLOAD_TTL_S = 3600


class EnvironmentListCreateApi(ApiView):
    """The same environments under either name: /environments or the /profiles view."""

    noun = "Environment"
    key = "environment"

    @extend_schema(responses={200: shapes.EnvironmentListSerializer})
    def get(self, request: Request) -> Response:
        rows = selectors.environment_list(team=self.principal.team)
        return ok({f"{self.key}s": [selectors.environment_body(e) for e in rows]})

    @extend_schema(request=shapes.EnvironmentCreateSerializer, responses={201: shapes.EnvironmentCreatedSerializer})
    def post(self, request: Request) -> Response:
        data = validated(shapes.EnvironmentCreateSerializer(data=object_body(request.data), noun=self.noun))
        environment = services.environment_create(
            team=self.principal.team, name=data["name"], description=data["description"], noun=self.noun
        )
        return ok({"message": f"{self.noun} created", self.key: selectors.environment_body(environment)}, status=201)


class ProfileListCreateApi(EnvironmentListCreateApi):
    noun = "Profile"
    key = "profile"

    @extend_schema(responses={200: shapes.ProfileListSerializer})
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(request=shapes.EnvironmentCreateSerializer, responses={201: shapes.ProfileCreatedSerializer})
    def post(self, request: Request) -> Response:
        return super().post(request)


class EnvironmentDeleteApi(ApiView):
    noun = "Environment"

    @extend_schema(responses={200: SuccessMessageSerializer})
    def delete(self, request: Request, environment_id: str) -> Response:
        environment = selectors.environment_get(team=self.principal.team, environment_id=environment_id, noun=self.noun)
        services.environment_delete(environment=environment)
        return ok(message=f"{self.noun} deleted")


class ProfileDeleteApi(EnvironmentDeleteApi):
    noun = "Profile"


class EnvironmentUploadApi(ApiView):
    """Profile uploads share one per-team budget under either name (api.md §6.3: 100 per 15
    minutes; ENIGMA_PROFILE_UPLOAD_RATE_LIMIT, ENIGMA_PROFILE_UPLOAD_RATE_WINDOW_S)."""

    noun = "Environment"
    body_key = "environment"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._rate = rate_limit_hit(
            team_id=self.principal.team.pk,
            scope="profiles-upload",
            limit=settings.ENIGMA_PROFILE_UPLOAD_RATE_LIMIT,
            window_s=settings.ENIGMA_PROFILE_UPLOAD_RATE_WINDOW_S,
        )
        if self._rate is not None and not self._rate.allowed:
            raise RateLimited()

    @extend_schema(
        request={"multipart/form-data": shapes.ProfileUploadSerializer},
        responses={200: shapes.EnvironmentUploadedSerializer},
    )
    def post(self, request: Request, environment_id: str) -> Response:
        environment = selectors.environment_get(team=self.principal.team, environment_id=environment_id, noun=self.noun)
        environment = services.environment_profile_upload(environment=environment, upload=request.FILES.get("file"))
        return ok({"message": "Profile uploaded successfully", self.body_key: selectors.upload_body(environment)})


class ProfileUploadApi(EnvironmentUploadApi):
    noun = "Profile"
    body_key = "profile"

    @extend_schema(
        request={"multipart/form-data": shapes.ProfileUploadSerializer},
        responses={200: shapes.ProfileUploadedSerializer},
    )
    def post(self, request: Request, environment_id: str) -> Response:
        return super().post(request, environment_id)


class ProfileDownloadApi(ApiView):
    """A link to the profile archive that works without the key for an hour."""

    @extend_schema(responses={200: shapes.ProfileDownloadSerializer})
    def get(self, request: Request, environment_id: str) -> Response:
        environment = selectors.environment_get(team=self.principal.team, environment_id=environment_id, noun="Profile")
        if selectors.environment_storage_state(environment_id=environment.pk) is None:
            raise NoProfileData()
        token = signing.TimestampSigner(salt=DOWNLOAD_SALT).sign(environment.pk)
        url = f"{public_base_url(request)}/profiles/{environment.pk}/archive?token={token}"
        return ok(downloadUrl=url, expiresIn=DOWNLOAD_TTL_S)


class ProfileArchiveApi(ApiView):
    """The signed profile download: the token is the credential."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        parameters=[OpenApiParameter("token", str, required=True, description="from /profiles/{id}/download")],
        responses={(200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY, description="the profile archive")},
    )
    def get(self, request: Request, environment_id: str) -> HttpResponse:
        token = request.query_params.get("token", "")
        try:
            signed_id = signing.TimestampSigner(salt=DOWNLOAD_SALT).unsign(token, max_age=DOWNLOAD_TTL_S)
        except signing.BadSignature as exc:
            raise ApiError("Download link is invalid or has expired", code="INVALID_TOKEN", status_code=403) from exc
        if signed_id != environment_id:
            raise ApiError("Download link is invalid or has expired", code="INVALID_TOKEN", status_code=403)
        state = selectors.environment_storage_state(environment_id=environment_id)
        if state is None or not Environment.objects.filter(pk=environment_id).exists():
            raise EnvironmentNotFound("Profile not found")
        response = HttpResponse(build_profile_archive(state), content_type="application/gzip")
        response["Content-Disposition"] = f'attachment; filename="{environment_id}.tar.gz"'
        return response


class EnvironmentFilesApi(ApiView):
    @extend_schema(responses={200: shapes.EnvironmentFilesSerializer})
    def get(self, request: Request, environment_id: str) -> Response:
        environment = selectors.environment_get(team=self.principal.team, environment_id=environment_id)
        files = selectors.environment_files(environment=environment)
        return ok(files=[selectors.file_body(f) for f in files])


class EnvironmentFileDeleteApi(ApiView):
    @extend_schema(responses={200: SuccessMessageSerializer})
    def delete(self, request: Request, environment_id: str, file_id: str) -> Response:
        environment = selectors.environment_get(team=self.principal.team, environment_id=environment_id)
        stored = selectors.file_get(team=self.principal.team, file_id=file_id)
        if stored.environment_id != environment.pk:
            raise FileNotFound()
        services.file_delete(stored=stored)
        return ok(message="File deleted")


class FileUploadApi(ApiView):
    rate_scope = "files-upload"

    @extend_schema(
        request={"multipart/form-data": shapes.FileUploadSerializer}, responses={200: shapes.FilesUploadedSerializer}
    )
    def post(self, request: Request) -> Response:
        uploads = request.FILES.getlist("files")
        body = {"files": uploads, "environmentId": request.POST.get("environmentId")} if uploads else {}
        data = validated(shapes.FileUploadSerializer(data=body, context={"team": self.principal.team}))
        stored = [
            services.file_upload(team=self.principal.team, environment=data.get("environmentId"), upload=u)
            for u in data["files"]
        ]
        return ok(files=[{"fileId": f.pk, "originalName": f.original_name, "size": f.size} for f in stored])


class FileDetailApi(ApiView):
    @extend_schema(responses={200: SuccessMessageSerializer})
    def delete(self, request: Request, file_id: str) -> Response:
        """Delete an upload or a download of the team, row and blob (404 for another team's)."""
        services.file_delete(stored=selectors.file_get(team=self.principal.team, file_id=file_id))
        return ok(message="File deleted")


class FileDownloadApi(ApiView):
    """Download a file of the team (an upload, or a file the browser downloaded)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request: Request, file_id: str) -> FileResponse:
        stored = selectors.file_get(team=self.principal.team, file_id=file_id)
        if not storage.file_exists(stored.path):
            raise FileNotFound()
        return FileResponse(storage.file_open(stored.path), as_attachment=True, filename=stored.original_name)

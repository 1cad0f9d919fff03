"""File uploads on the Slack fake, in Slack's three steps: files.getUploadURLExternal
hands out an id and an upload URL, the bytes are POSTed there, and
files.completeUploadExternal shares the files (one bot message per channel). Also
files.info and `url_private` downloads."""

from __future__ import annotations

import json
import mimetypes
import secrets
import time
from collections.abc import Callable

from aiohttp import BodyPartReader, web

from tests.fakes.slack.protocol import (
    ID_ALPHABET,
    Json,
    SlackApiFailure,
    int_param,
    json_list,
    str_param,
)
from tests.fakes.slack.records import RecordedCall, RecordedUpload
from tests.fakes.slack.web_api import MethodHandler, WebApi, bearer_token


def sniff_mimetype(filename: str, content: bytes) -> str:
    """What Slack would call the file: by its magic bytes, else by its name."""
    for magic, mimetype in (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"%PDF-", "application/pdf"),
    ):
        if content.startswith(magic):
            return mimetype
    guessed, _ = mimetypes.guess_type(filename)
    if guessed is not None:
        return guessed
    try:
        content.decode()
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


class Files(WebApi):
    """Recorded: `uploads` (completed uploads, in order) and `files` (every file id
    handed out)."""

    def _init_files(self) -> None:
        self.uploads: list[RecordedUpload] = []
        self.files: dict[str, RecordedUpload] = {}
        self._upload_keys: dict[str, str] = {}

    def _file_methods(self) -> dict[str, MethodHandler]:
        return {
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
        }

    async def wait_for_upload(
        self,
        predicate: Callable[[RecordedUpload], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        start: int = 0,
    ) -> RecordedUpload:
        """The first completed upload (from index `start` of `uploads`, including uploads
        already recorded) satisfying `predicate`."""

        def find() -> RecordedUpload | None:
            for upload in self.uploads[start:]:
                if predicate is None or predicate(upload):
                    return upload
            return None

        def describe() -> str:
            seen = [
                f"{u.file_id} {u.filename!r} -> {u.channels or 'private'}"
                for u in self.uploads[start:]
            ]
            pending = [u.file_id for u in self.files.values() if not u.completed]
            return (
                f"no matching upload within {timeout}s; completed {seen}, not completed {pending}"
            )

        return await self._wait(find, timeout, describe)

    # --- HTTP: the upload URL and url_private ----------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: raw bytes or a multipart form (its first file part). No token;
        the URL itself is the credential. Not limited by aiohttp's client_max_size."""
        file_id = self._upload_keys.get(request.match_info["key"])
        upload = self.files.get(file_id) if file_id is not None else None
        if upload is None or upload.completed:
            return _plain(404, "file not found")
        content_type: str | None = request.content_type if request.body_exists else None
        if content_type == "multipart/form-data":
            content = b""
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and (
                    part.filename is not None or part.name in ("file", "filename")
                ):
                    content = bytes(await part.read())
                    content_type = part.headers.get("Content-Type", content_type)
                    break
        else:
            content = await request.content.read()
        upload.content = content
        upload.content_type = content_type
        upload.uploaded = True
        upload.mimetype = sniff_mimetype(upload.filename, content)
        self._notify()
        return _plain(200, f"OK - {len(content)}")

    async def _download(self, request: web.Request) -> web.Response:
        """`url_private`: the bytes of a completed upload, for a valid bot or user token."""
        valid = self._accepts(bearer_token(request.headers.get("Authorization")) or "")
        upload = self.files.get(request.match_info["file_id"])
        if not valid:
            return _plain(403, "forbidden")
        if upload is None or not upload.completed:
            return _plain(404, "file not found")
        return web.Response(body=upload.content, content_type=upload.mimetype)

    # --- methods ---------------------------------------------------------------------------

    def _file_object(self, upload: RecordedUpload) -> Json:
        """A file as files.info and files.completeUploadExternal describe it."""
        name = upload.filename
        _, dot, extension = name.rpartition(".")
        filetype = extension.lower() if dot and extension else "binary"
        if upload.mimetype == "text/plain" and filetype == "binary":
            filetype = "text"
        url = f"{self.base_url}/files-pri/{upload.file_id}/{name}"
        public = [c for c in upload.channels if self.channels.get(c, {}).get("is_channel")]
        private = [c for c in upload.channels if c not in public and not c.startswith("D")]
        shares: Json = {}
        for key, ids in (("public", public), ("private", private)):
            if ids:
                shares[key] = {
                    c: [
                        {
                            "ts": upload.shares[c],
                            "channel_name": self.channels.get(c, {}).get("name", ""),
                            "team_id": self.team_id,
                            "share_user_id": upload.user,
                            "reply_count": 0,
                            "reply_users": [],
                            "reply_users_count": 0,
                            **({"thread_ts": upload.thread_ts} if upload.thread_ts else {}),
                        }
                    ]
                    for c in ids
                }
        file: Json = {
            "id": upload.file_id,
            "created": upload.created,
            "timestamp": upload.created,
            "name": name,
            "title": upload.title if upload.title is not None else name,
            "mimetype": upload.mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": upload.user,
            "user_team": self.team_id,
            "editable": False,
            "size": upload.size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(public),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": url,
            "url_private_download": url + "?download=1",
            "permalink": f"https://{self.team_domain}.slack.com/files/{upload.user}/"
            f"{upload.file_id}/{name}",
            "channels": public,
            "groups": private,
            "ims": [c for c in upload.channels if c.startswith("D")],
            "comments_count": 0,
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if shares:
            file["shares"] = shares
        if upload.alt_txt is not None:
            file["alt_txt"] = upload.alt_txt
        return file

    def _share_target(self, value: str) -> str:
        """A channel files.completeUploadExternal may share into: a channel id the bot is
        in, a user id (their direct message) or a D id."""
        channel_id = value.strip()
        if channel_id[:1] in ("U", "W") and channel_id in self.users:
            channel_id = "D" + channel_id[1:]
            if channel_id not in self.channels:
                self.add_channel(channel_id, user=value)
        elif channel_id.startswith("D") and channel_id not in self.channels:
            self.add_channel(channel_id)
        channel = self.channels.get(channel_id)
        if channel is None:
            raise SlackApiFailure("channel_not_found")
        if channel.get("is_archived"):
            raise SlackApiFailure("is_archived")
        if channel.get("is_member") is False:
            raise SlackApiFailure("not_in_channel")
        return channel_id

    def _files_get_upload_url_external(self, call: RecordedCall) -> Json:
        filename = str_param(call.params, "filename")
        if filename is None or str_param(call.params, "length") is None:
            raise SlackApiFailure("invalid_arguments")
        length = int_param(call.params, "length", 0)
        if length <= 0:
            raise SlackApiFailure("invalid_arguments")
        file_id = "F" + "".join(secrets.choice(ID_ALPHABET) for _ in range(10))
        key = secrets.token_urlsafe(16)
        self._upload_keys[key] = file_id
        upload_url = f"{self.base_url}/upload/v1/{key}"
        self.files[file_id] = RecordedUpload(
            file_id=file_id,
            filename=filename,
            length=length,
            upload_url=upload_url,
            time=call.time,
            token=call.token,
            user=self.bot_user_id,
            alt_txt=str_param(call.params, "alt_txt"),
            snippet_type=str_param(call.params, "snippet_type"),
        )
        return {"upload_url": upload_url, "file_id": file_id}

    def _uploaded_files(self, params: Json) -> list[tuple[RecordedUpload, str | None]]:
        """The uploads `files` names (each with its title, if given): uploaded, not
        completed yet."""
        raw_files = params.get("files")
        if isinstance(raw_files, str):
            try:
                raw_files = json.loads(raw_files)
            except json.JSONDecodeError:
                raise SlackApiFailure("invalid_arguments") from None
        if not isinstance(raw_files, list) or not raw_files:
            raise SlackApiFailure("invalid_arguments")
        entries: list[tuple[RecordedUpload, str | None]] = []
        for item in raw_files:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise SlackApiFailure("invalid_arguments")
            upload = self.files.get(item["id"])
            if upload is None or not upload.uploaded or upload.completed:
                raise SlackApiFailure("file_not_found")
            title = item.get("title")
            entries.append((upload, str(title) if title not in (None, "") else None))
        return entries

    def _files_complete_upload_external(self, call: RecordedCall) -> Json:
        params = call.params
        entries = self._uploaded_files(params)
        targets: list[str] = []
        channel_id = str_param(params, "channel_id")
        if channel_id is not None:
            targets.append(channel_id)
        for value in str(params.get("channels") or "").split(","):
            if value.strip() and value.strip() not in targets:
                targets.append(value.strip())
        channels = [self._share_target(value) for value in targets]
        thread_ts = str_param(params, "thread_ts")
        if thread_ts is not None and len(channels) != 1:
            raise SlackApiFailure("invalid_arguments")
        initial_comment = str_param(params, "initial_comment")
        blocks = None if initial_comment is not None else json_list(params.get("blocks"))

        now = int(time.time())
        for upload, title in entries:
            upload.title = title if title is not None else upload.filename
            upload.completed = True
            upload.created = now
            upload.time = call.time
            upload.initial_comment = initial_comment
            upload.thread_ts = thread_ts
            upload.channels = list(channels)
        for channel in channels:
            ts = self.new_ts()
            for upload, _ in entries:
                upload.shares[channel] = ts
        for channel in channels:
            ts = entries[0][0].shares[channel]
            message = self._bot_message(initial_comment or "", ts, blocks)
            message["files"] = [self._file_object(upload) for upload, _ in entries]
            message["upload"] = True
            message["display_as_bot"] = False
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            self._store(channel, message)
        for upload, _ in entries:
            self.uploads.append(upload)
        return {"files": [self._file_object(upload) for upload, _ in entries]}

    def _files_info(self, call: RecordedCall) -> Json:
        file_id = str_param(call.params, "file")
        upload = self.files.get(file_id) if file_id is not None else None
        if upload is None or not upload.completed:
            raise SlackApiFailure("file_not_found")
        return {
            "file": self._file_object(upload),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

from google.api import annotations_pb2 as _annotations_pb2
from tokenservice.v1 import token_service_pb2 as _token_service_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SignUpRequest(_message.Message):
    __slots__ = ("tenant", "email", "password", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    password: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., password: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class SignUpResponse(_message.Message):
    __slots__ = ("customer_id", "opt_in_required")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    OPT_IN_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    opt_in_required: bool
    def __init__(self, customer_id: _Optional[str] = ..., opt_in_required: _Optional[bool] = ...) -> None: ...

class ConfirmSignUpRequest(_message.Message):
    __slots__ = ("tenant", "token", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    token: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., token: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class ResendSignUpLinkRequest(_message.Message):
    __slots__ = ("tenant", "email", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("tenant", "access_token", "current_password", "new_password")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    access_token: str
    current_password: str
    new_password: str
    def __init__(self, tenant: _Optional[str] = ..., access_token: _Optional[str] = ..., current_password: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class RequestPasswordResetRequest(_message.Message):
    __slots__ = ("tenant", "email", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class ResetPasswordRequest(_message.Message):
    __slots__ = ("tenant", "token", "new_password", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    token: str
    new_password: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., token: _Optional[str] = ..., new_password: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class RequestEmailChangeRequest(_message.Message):
    __slots__ = ("tenant", "access_token", "email", "password", "new_email")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_EMAIL_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    access_token: str
    email: str
    password: str
    new_email: str
    def __init__(self, tenant: _Optional[str] = ..., access_token: _Optional[str] = ..., email: _Optional[str] = ..., password: _Optional[str] = ..., new_email: _Optional[str] = ...) -> None: ...

class ConfirmEmailChangeRequest(_message.Message):
    __slots__ = ("tenant", "token", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    token: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., token: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class AccountAccepted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionsEnded(_message.Message):
    __slots__ = ("sessions_ended",)
    SESSIONS_ENDED_FIELD_NUMBER: _ClassVar[int]
    sessions_ended: int
    def __init__(self, sessions_ended: _Optional[int] = ...) -> None: ...

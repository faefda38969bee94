from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class StoredFile(Base):
    """An image kept in the blob store, owned by one account, deleted after its retention."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_expires", "expires_at"),)

    id: Mapped[str] = mapped_column(String(60), primary_key=True)  # "file_" + 128 random bits
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    blob_key: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InstanceSecret(Base):
    """Secrets every replica must share (e.g. the key that signs file URLs), made at first start."""

    __tablename__ = "instance_secrets"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))

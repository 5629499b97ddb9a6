"""ShopFlow: order processing with a transactional outbox and a fulfilment saga."""

from shopflow.celery import app as celery_app

__all__ = ("celery_app",)

"""(to do)"""
from fastapi import APIRouter

router = APIRouter()

"""vision tests"""

"""The page (app.py, views/): headless AppTest and a real Chromium."""

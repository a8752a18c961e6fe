"""Runs in the Label Studio server's venv (it has selenium): logs in with headless Chromium,
opens the labeling page of one task and saves a screenshot.

    python label_studio_browser.py URL EMAIL PASSWORD PROJECT_ID TASK_ID OUT.png

Prints the choices the page shows as selected (the pre-annotation), one per line.
"""

import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def main(url, email, password, project_id, task_id, out):
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800",
               "--hide-scrollbars"):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  wait = WebDriverWait(driver, 90)
  try:
    driver.get(f"{url}/user/login/")
    wait.until(ec.presence_of_element_located((By.NAME, "email"))).send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    wait.until(lambda d: "/user/login" not in d.current_url)
    driver.get(f"{url}/projects/{project_id}/data?task={task_id}")
    # The task's image drawn large in the labeling area (the data manager's thumbnails are small).
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 0 && "
        "i.getBoundingClientRect().width > 200)"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[class*='choice' i] input[type=radio]:checked"))
    for radio in driver.find_elements(By.CSS_SELECTOR, "[class*='choice' i] input[type=radio]:checked"):
      text = driver.execute_script(  # the choice's caption: "4[5]" (the class, then its hotkey)
          "let e = arguments[0]; while (e && !e.innerText.trim()) e = e.parentElement; return e ? e.innerText : ''",
          radio)
      print(text.split("[")[0].strip())
    driver.save_screenshot(out)
  finally:
    driver.quit()


if __name__ == "__main__":
  main(*sys.argv[1:])

// tollgate console: small enhancements only. Every page works without this script.
(function () {
  "use strict";
  // Copy: copies the text of the element named by data-copy, and says so.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      });
    });
  });
  // Preset: choosing one ticks its permissions; the key then gets exactly the ticked
  // ones, so the preset itself is not sent.
  document.querySelectorAll("select[data-presets]").forEach(function (select) {
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      var wanted = (option.getAttribute("data-permissions") || "").split(" ").filter(Boolean);
      if (!wanted.length) { return; }
      select.form.querySelectorAll("input[name=permissions]").forEach(function (box) {
        box.checked = wanted.indexOf(box.value) >= 0;
      });
    });
    select.form.addEventListener("submit", function () { select.disabled = true; });
  });
})();

// hostplane console: the few things a page can't do without script.
(function () {
  // After a key is created, the address is the list's: a reload shows the list, not the secret.
  var shown = document.querySelector("[data-replace-url]");
  if (shown && window.history.replaceState) {
    window.history.replaceState(null, "", shown.getAttribute("data-replace-url"));
  }
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.getAttribute("data-copy")).textContent;
      navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
})();

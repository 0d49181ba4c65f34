// Channel add form: six providers' credential fieldsets exist, only the chosen one matters.
document.addEventListener("DOMContentLoaded", function () {
  const kind = document.getElementById("id_kind");
  const groups = document.querySelectorAll("fieldset.provider-credentials");
  if (!kind || kind.tagName !== "SELECT" || groups.length < 2) return;
  function show() {
    groups.forEach(function (group) {
      group.hidden = !group.classList.contains("provider-" + kind.value);
    });
  }
  kind.addEventListener("change", show);
  show();
});

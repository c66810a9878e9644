// Keytrail console: the copy button beside a secret. Everything else works
// without script.
for (const b of document.querySelectorAll("button.copy")) b.hidden = false;
document.addEventListener("click", (e) => {
  const b = e.target.closest("button.copy");
  if (!b) return;
  const field = document.getElementById(b.dataset.copy);
  if (!field) return;
  field.select();
  const done = () => { b.textContent = "Copied"; };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(field.value).then(done, () => { document.execCommand("copy"); done(); });
  } else {
    document.execCommand("copy");
    done();
  }
});

// A classic (non-module) script, so that it still runs when a page is opened as a file: browsers refuse
// to load ES modules from file://, so say how to open the pages instead of showing a dead page.
if (location.protocol === "file:") {
  document.addEventListener("DOMContentLoaded", () => {
    const note = document.createElement("p");
    note.className = "status error";
    note.textContent = "Browsers do not run this page's scripts (ES modules) from a file. Open it through the " +
      "server instead: http://127.0.0.1:5020/ (scripts/api.sh), or serve this folder with " +
      "`python3 -m http.server -d frontend 8000` and open http://127.0.0.1:8000/image-search.html?api=http://127.0.0.1:5020";
    document.body.prepend(note);
  });
}
